"""What every encoder shares: one model loaded from a resolved directory, its text tower, precision
chosen with a precision check, and the metadata that records what made a vector.

Subclasses (CLIP for image–text, CLAP for audio–text) add their other tower and its preprocessing.
"""

from __future__ import annotations

import platform

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

import mm_assets
from mm_assets.config import EncoderConfig
from mm_assets.encoders.precision import precision_check_passes, resolve_precision
from mm_assets.encoders.resolve import ResolvedModel, resolve_model
from mm_assets.encoders.runtime import (
    ONNX_PRECISIONS,
    OnnxTower,
    TowerGraph,
    export_dir,
    load_onnx_tower,
    normalise_rows,
    onnxruntime_usable,
    runtime_version,
    write_export_summary,
)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Fixed captions for the precision check: ordinary sentences, as queries and chunks are.
PRECISION_CHECK_TEXTS = [
    "a photo of a dog on a beach",
    "two people hiking in the mountains",
    "a bowl of soup",
    "city at night",
]


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoder:
    """Loads once; embeds text (and the subclass's other modality) into unit-norm float32 rows."""

    model_class: type  # a transformers model with get_text_features and a projection_dim
    modalities: frozenset[str]
    max_tokens: int

    def __init__(self, config: EncoderConfig, resolved: ResolvedModel | None = None):
        self.config = config
        self.resolved = resolved or resolve_model(config.model, config.revision)
        unsupported = set(config.modalities) - self.modalities
        if unsupported:
            raise ValueError(
                f"encoder {config.name!r}: {config.model} is a {self.model_class.__name__}, which embeds "
                f"{' and '.join(sorted(self.modalities))}, not {' or '.join(sorted(unsupported))}; "
                "fix `modalities` in its encoder config"
            )
        self.device = pick_device(config.device)
        self.model = self.model_class.from_pretrained(
            self.resolved.local_dir, use_safetensors=True, dtype=torch.float32
        )
        self.model.to(self.device).eval()
        self.dtype = torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.local_dir)
        self.dim = int(self.model.config.projection_dim)
        self.check_cosine: float | None = None
        self._precision, self.runtime = "float32", "torch"
        self._onnx: dict[str, OnnxTower] = {}  # tower name -> session, when ONNX Runtime runs it
        self._load_preprocessing()
        onnx = onnxruntime_usable(config.runtime, self.device, exportable=bool(self._tower_graphs()))
        precision = resolve_precision(config.dtype, self.device, int8_runtime=onnx)
        self._set_precision(precision, "onnxruntime" if onnx and precision in ONNX_PRECISIONS else "torch")

    def _load_preprocessing(self) -> None:
        """Read the other tower's preprocessing from the model directory; set ``max_tokens``."""
        raise NotImplementedError

    def _embed_check_inputs(self) -> np.ndarray:
        """Embeddings of fixed inputs of every modality, to compare precisions."""
        raise NotImplementedError

    def preprocessing_metadata(self) -> dict:
        return {}

    def _tower_graphs(self) -> dict[str, TowerGraph]:
        """The towers ONNX Runtime can run (none: this encoder runs on PyTorch only)."""
        return {}

    def _export_settings(self) -> dict:
        """What an export summary must hold besides the metadata to load without transformers."""
        return {}

    def _set_precision(self, precision: str, runtime: str) -> None:
        """Run in the wanted precision and runtime, after checking them on fixed check inputs
        against PyTorch float32: what ``auto`` chose is kept only within MIN_COSINE_TO_FP32 (else
        PyTorch float32); what was asked for by name is kept, its cosine recorded."""
        if precision == "int8" and runtime != "onnxruntime":
            raise ValueError(
                f"encoder {self.config.name!r}: dtype int8 runs on ONNX Runtime, on a CPU "
                f"(this one runs on {runtime}, device {self.device}); use dtype auto or float32"
            )
        if (precision, runtime) == ("float32", "torch"):
            return
        reference = self._embed_check_inputs()
        self._run_in(precision, runtime)
        self.check_cosine = float((reference * self._embed_check_inputs()).sum(axis=1).min())
        if runtime == "onnxruntime":
            self._complete_export(export_dir(self.resolved, precision))
        if precision_check_passes(self.config, precision, self.check_cosine):
            return
        if self.config.dtype == "auto":
            self._run_in("float32", "torch")
        elif self.config.runtime == "auto" and precision != "int8":  # int8 runs on ONNX Runtime only
            self._run_in(precision, "torch")

    def _run_in(self, precision: str, runtime: str) -> None:
        if runtime == "onnxruntime":
            self.model.to(torch.float32)
            folder = export_dir(self.resolved, precision)
            self._onnx = {name: load_onnx_tower(g, folder, precision) for name, g in self._tower_graphs().items()}
        else:
            self.model.to(_DTYPES[precision])
            self._onnx = {}
        self._precision, self.runtime = precision, runtime
        self.dtype = torch.float32 if runtime == "onnxruntime" else _DTYPES[precision]

    def _complete_export(self, folder) -> None:
        """Write what loading from the export alone needs (encoders/exported.py): the tokenizer as
        this process calls it, the precision check and the metadata. Only a fast tokenizer is one file."""
        if not self.tokenizer.is_fast or self.tokenizer.pad_token is None:
            return
        tokenizer = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        tokenizer.enable_truncation(self.max_tokens)
        tokenizer.enable_padding(pad_id=self.tokenizer.pad_token_id, pad_token=self.tokenizer.pad_token)
        summary = {
            "precision": self.precision,
            "calibration_cosine": self.check_cosine,
            "max_tokens": self.max_tokens,
            "metadata": self.metadata(),
            **self._export_settings(),
        }
        write_export_summary(folder, summary, tokenizer.to_str())

    @property
    def precision(self) -> str:
        return self._precision

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np")
        ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
        if "text" in self._onnx:
            return normalise_rows(self._onnx["text"](input_ids=ids, attention_mask=mask))
        out = self.model.get_text_features(
            input_ids=torch.from_numpy(ids).to(self.device), attention_mask=torch.from_numpy(mask).to(self.device)
        )
        return normalise(out.pooler_output)

    def metadata(self) -> dict:
        """Everything needed to know what produced a vector, and to load the same model again (with the
        encoder's identity, this is the encoder record: encoders/identity.py)."""
        return {
            "model_id": self.resolved.model_id,
            "model_dir": str(self.resolved.local_dir),
            "revision": self.resolved.revision,
            "architecture": (self.model.config.architectures or [self.model_class.__name__])[0],
            "embedding_dim": self.dim,
            **self.preprocessing_metadata(),
            "max_tokens": self.max_tokens,
            "dtype": self.precision,
            "dtype_requested": self.config.dtype,
            "runtime": runtime_version(self.runtime),
            "runtime_requested": self.config.runtime,
            "calibration_cosine_to_fp32": self.check_cosine,  # the precision check (key kept: homes already record it)
            "device": self.device,
            "parameters": sum(t.numel() for t in self.model.parameters()),
            "modalities": list(self.config.modalities),
            "lineage": self.resolved.lineage(),
            "versions": {
                "mm_assets": mm_assets.__version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
        }


def normalise(features: torch.Tensor) -> np.ndarray:
    """Unit-norm float32 rows, normalised as ONNX Runtime's outputs are (same inputs, same bits)."""
    return normalise_rows(features.float().cpu().numpy())
