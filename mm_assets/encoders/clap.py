"""A CLAP encoder (transformers' ClapModel): audio and text towers in their own shared space.

Audio is embedded in windows no longer than the model's input (10 s for LAION's CLAP), so the
feature extractor never crops at random; a shorter window is repeat-padded as the model was trained.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoFeatureExtractor, ClapModel

from mm_assets.encoders.base import PRECISION_CHECK_TEXTS, Encoder, normalise


class ClapEncoder(Encoder):
    model_class = ClapModel
    modalities = frozenset({"audio", "text"})

    def _load_preprocessing(self) -> None:
        self.features = AutoFeatureExtractor.from_pretrained(self.resolved.local_dir)
        self.sample_rate = int(self.features.sampling_rate)
        self.max_seconds = float(self.features.max_length_s)
        # RoBERTa-style position ids start after the padding index: two fewer usable positions.
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings) - 2

    @torch.inference_mode()
    def embed_audio(self, waveforms: list[np.ndarray]) -> np.ndarray:
        """Mono float32 waveforms at ``sample_rate``, each at most ``max_seconds`` long."""
        inputs = self.features(waveforms, sampling_rate=self.sample_rate, return_tensors="pt")
        features = inputs["input_features"].to(self.device, self.dtype)
        out = self.model.get_audio_features(input_features=features, is_longer=inputs.get("is_longer"))
        return normalise(out.pooler_output)

    def _embed_check_inputs(self) -> np.ndarray:
        t = np.arange(int(self.sample_rate * 2)) / self.sample_rate
        tones = [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220.0, 440.0, 1000.0)]
        return np.concatenate([self.embed_audio(tones), self.embed_texts(PRECISION_CHECK_TEXTS)])

    def preprocessing_metadata(self) -> dict:
        return {
            "audio_sample_rate": self.sample_rate,
            "audio_max_seconds": self.max_seconds,
            "audio_mel_bins": int(self.features.feature_size),
        }
