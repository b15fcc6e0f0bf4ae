import json
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPImageProcessor, CLIPModel

from mm_assets.config import EncoderConfig
from mm_assets.encoders.clip import ClipEncoder
from mm_assets.encoders.identity import fingerprint
from mm_assets.encoders.precision import cpu_has_native_bf16, resolve_precision
from mm_assets.encoders.resolve import ModelNotFoundError, resolve_model
from mm_assets_tests.corpus import gradient


def test_local_directory_resolves_with_a_weights_hash(tiny_clip):
    resolved = resolve_model(str(tiny_clip))
    assert resolved.local_dir == tiny_clip and resolved.revision.startswith("sha256:")
    assert resolve_model(str(tiny_clip)).revision == resolved.revision


@pytest.mark.parametrize("offline", [True, False])
def test_a_missing_hub_model_fails_fast_with_instructions(monkeypatch, tmp_path, offline):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", offline)
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("openai/clip-vit-base-patch32")
    assert time.monotonic() - start < 10, "no retries: one clear error within seconds"
    message = str(err.value)
    assert "not in the Hugging Face cache" in message
    assert "local directory" in message and "HF_HUB_OFFLINE=1" in message


def test_a_missing_local_directory_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "no-such-model"))


def test_preprocessing_matches_the_reference_processor(tiny_clip):
    encoder = ClipEncoder(EncoderConfig(name="clip", model=str(tiny_clip)))
    reference = CLIPImageProcessor.from_pretrained(tiny_clip)
    for image in (gradient(640, 480, 1), gradient(33, 90, 2)):
        ours = encoder.preprocess(image)
        theirs = np.asarray(reference(images=[image], return_tensors="np")["pixel_values"][0])
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < 0.05


def test_embeddings_match_the_plain_transformers_path(tiny_clip):
    encoder = ClipEncoder(EncoderConfig(name="clip", model=str(tiny_clip)))
    model = CLIPModel.from_pretrained(tiny_clip, use_safetensors=True).eval()
    images = [gradient(200, 150, s) for s in range(3)]
    pixels = CLIPImageProcessor.from_pretrained(tiny_clip)(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    got = encoder.embed_images(images)
    assert got.shape == (3, encoder.dim)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert (got * expected.numpy()).sum(1).min() > 0.999
    texts = encoder.embed_texts(["a dog on a beach", "x"])
    assert texts.shape == (2, encoder.dim) and np.isfinite(texts).all()


def test_reduced_precision_stays_close_to_fp32(tiny_clip):
    fp32 = ClipEncoder(EncoderConfig(name="clip", model=str(tiny_clip), dtype="float32"))
    bf16 = ClipEncoder(EncoderConfig(name="clip", model=str(tiny_clip), dtype="bfloat16"))
    images = [gradient(100, 100, s) for s in range(4)]
    cos = (fp32.embed_images(images) * bf16.embed_images(images)).sum(1)
    assert cos.min() > 0.99
    assert fp32.metadata()["dtype"] == "float32" and bf16.metadata()["dtype"] == "bfloat16"
    assert fingerprint(EncoderConfig("a", dtype="bfloat16")) != fingerprint(EncoderConfig("a"))


def test_encoder_metadata_records_lineage(tiny_clip):
    meta = ClipEncoder(EncoderConfig(name="clip", model=str(tiny_clip))).metadata()
    for key in (
        "model_id",
        "revision",
        "architecture",
        "embedding_dim",
        "image_size",
        "image_mean",
        "max_tokens",
        "dtype",
        "device",
        "parameters",
        "versions",
    ):
        assert meta[key] not in (None, "", []), key
    assert meta["embedding_dim"] == 16 and meta["max_tokens"] == 77 and meta["architecture"] == "CLIPModel"
    assert meta["versions"]["torch"] == torch.__version__


CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f {extra}\n"


def test_auto_precision_follows_the_hardware(monkeypatch):
    assert cpu_has_native_bf16(CPUINFO.format(extra="avx512_bf16"))
    assert cpu_has_native_bf16(CPUINFO.format(extra="amx_bf16"))
    assert not cpu_has_native_bf16(CPUINFO.format(extra=""))
    assert resolve_precision("float16", "cpu") == "float16"
    assert fingerprint(EncoderConfig("a")) != fingerprint(EncoderConfig("a", dtype="float32"))


def test_auto_precision_falls_back_to_fp32_when_it_drifts(tiny_clip, monkeypatch):
    monkeypatch.setattr("mm_assets.encoders.base.resolve_precision", lambda dtype, device: "bfloat16")
    kept = ClipEncoder(EncoderConfig(name="clip", model=str(tiny_clip)))
    assert kept.precision == "bfloat16" and kept.calibration_cosine > 0.999
    monkeypatch.setattr("mm_assets.encoders.base.MIN_COSINE_TO_FP32", 1.01)  # nothing can pass
    fallback = ClipEncoder(EncoderConfig(name="clip", model=str(tiny_clip)))
    assert fallback.precision == "float32" and fallback.metadata()["dtype"] == "float32"
    assert fallback.metadata()["dtype_requested"] == "auto"


def _hostile_model(source: Path, folder: Path, marker: Path, *, keep_safetensors: bool) -> Path:
    """A copy of a model whose config files ask for remote code and that carries a pickle payload;
    executing either would create ``marker``."""
    shutil.copytree(source, folder)
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n")
    for name, auto_map in (
        ("config.json", {"AutoConfig": "evil.Config", "AutoModel": "evil.Model"}),
        ("tokenizer_config.json", {"AutoTokenizer": ["evil.Tokenizer", None]}),
        ("processor_config.json", {"AutoProcessor": "evil.Processor"}),
    ):
        path = folder / name
        assert path.exists(), name
        path.write_text(json.dumps({**json.loads(path.read_text()), "auto_map": auto_map}))

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    if not keep_safetensors:
        for weights in folder.glob("*.safetensors"):
            weights.unlink()
    return folder


def test_a_model_directory_never_runs_its_code_or_unpickles_its_weights(tiny_clip, tmp_path):
    from mm_assets.encoders.load import load_encoder

    marker = tmp_path / "marker"
    hostile = _hostile_model(tiny_clip, tmp_path / "hostile", marker, keep_safetensors=True)
    encoder = load_encoder(EncoderConfig("clip", model=str(hostile)))
    assert encoder.embed_texts(["a dog"]).shape == (1, 16)
    assert not marker.exists(), "remote code or a pickle was executed"

    pickle_only = _hostile_model(tiny_clip, tmp_path / "pickle_only", marker, keep_safetensors=False)
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        load_encoder(EncoderConfig("clip", model=str(pickle_only)))
    assert not marker.exists()
