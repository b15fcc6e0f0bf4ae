import json
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPImageProcessor, CLIPModel

from mm_assets.config import EncoderConfig
from mm_assets.encoders.clip import ClipEncoder
from mm_assets.encoders.exported import ExportedClipEncoder
from mm_assets.encoders.identity import fingerprint
from mm_assets.encoders.load import load_encoder
from mm_assets.encoders.precision import cpu_has_native_bf16, resolve_precision
from mm_assets.encoders.resolve import ModelNotFoundError, resolve_model
from mm_assets.encoders.runtime import EXPORT_SUMMARY
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
    monkeypatch.setattr("mm_assets.encoders.base.resolve_precision", lambda dtype, device, **_: "bfloat16")
    kept = ClipEncoder(EncoderConfig(name="clip", model=str(tiny_clip)))
    assert kept.precision == "bfloat16" and kept.check_cosine > 0.999
    monkeypatch.setattr("mm_assets.encoders.precision.MIN_COSINE_TO_FP32", 1.01)  # nothing can pass
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


def _clip(model: Path, **options) -> ClipEncoder:
    return ClipEncoder(EncoderConfig(name="clip", model=str(model), **options))


def _min_cosine(a: ClipEncoder, b: ClipEncoder, images, texts) -> float:
    return min(
        float((a.embed_images(images) * b.embed_images(images)).sum(1).min()),
        float((a.embed_texts(texts) * b.embed_texts(texts)).sum(1).min()),
    )


# Batches of several sizes and token lengths (one past the context, so truncated): the exported
# graphs must not have kept the shapes they were traced with.
TEXT_BATCHES = [["a"], ["a dog on a beach", "x", "two people hiking in the snowy mountains at dawn"], ["word " * 120]]


def test_onnx_runtime_embeds_as_pytorch_does(tiny_clip):
    pytorch = _clip(tiny_clip, dtype="float32", runtime="torch")
    onnx = _clip(tiny_clip, dtype="float32", runtime="onnxruntime")
    assert (pytorch.runtime, onnx.runtime) == ("torch", "onnxruntime")
    assert onnx.metadata()["runtime"].startswith("onnxruntime ") and pytorch.metadata()["runtime"].startswith("torch ")
    for n, texts in zip((1, 3, 5), TEXT_BATCHES):
        images = [gradient(40 + 10 * i, 60, i) for i in range(n)]
        assert _min_cosine(pytorch, onnx, images, texts) > 0.999
    # The runtime changes speed, not the embedding space: same fingerprint, same table.
    assert fingerprint(pytorch.config) == fingerprint(onnx.config)


def test_int8_is_a_precision_of_its_own(tiny_clip):
    fp32 = _clip(tiny_clip, dtype="float32", runtime="torch")
    int8 = _clip(tiny_clip, dtype="int8")
    meta = int8.metadata()
    assert (meta["dtype"], int8.runtime) == ("int8", "onnxruntime") and meta["calibration_cosine_to_fp32"] > 0.99
    images = [gradient(64, 48, i) for i in range(4)]
    assert _min_cosine(fp32, int8, images, TEXT_BATCHES[1]) > 0.99  # a 2-layer random model; ViT-B/32: 0.9998
    assert fingerprint(int8.config) not in {fingerprint(fp32.config), fingerprint(EncoderConfig("clip"))}
    # A vector depends on its content only, not on the batch it was embedded in (nor its padding).
    alone = np.concatenate([int8.embed_images([im]) for im in images])
    assert np.allclose(int8.embed_images(images), alone, atol=1e-6)
    texts = TEXT_BATCHES[1]
    assert np.allclose(int8.embed_texts(texts), np.concatenate([int8.embed_texts([t]) for t in texts]), atol=1e-6)
    with pytest.raises(ValueError, match="int8 does not run on runtime torch"):
        EncoderConfig("clip", dtype="int8", runtime="torch")


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    """This machine as an AVX2-only CPU, whatever it really has (the choice `auto` makes there)."""
    monkeypatch.setattr("mm_assets.encoders.precision.cpu_has_native_bf16", lambda cpuinfo=None: False)
    resolve_precision.cache_clear()
    yield
    resolve_precision.cache_clear()


def test_auto_on_a_cpu_without_bf16_runs_int8_only_while_it_stays_close(tiny_clip, cpu_without_bf16, monkeypatch):
    # The 2-layer test model quantizes worse than ViT-B/32 (precision check cosine 0.9988, ViT-B/32 0.999+):
    # the bar is moved to either side of it.
    monkeypatch.setattr("mm_assets.encoders.precision.MIN_COSINE_TO_FP32", 0.99)
    chosen = _clip(tiny_clip)
    assert (chosen.precision, chosen.runtime) == ("int8", "onnxruntime")
    assert chosen.check_cosine >= 0.99 and chosen.metadata()["dtype_requested"] == "auto"
    monkeypatch.setattr("mm_assets.encoders.precision.MIN_COSINE_TO_FP32", 1.01)  # nothing can pass
    fallback = _clip(tiny_clip)
    assert (fallback.precision, fallback.runtime) == ("float32", "torch")


def test_a_machine_without_onnxruntime_falls_back_to_pytorch(tiny_clip, cpu_without_bf16, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails, as where it is absent
    fallback = _clip(tiny_clip)
    assert (fallback.precision, fallback.runtime) == ("float32", "torch")
    assert fallback.metadata()["runtime"].startswith("torch ")
    assert fallback.embed_texts(["a dog"]).shape == (1, fallback.dim)
    with pytest.raises(ValueError, match="onnxruntime' is unavailable: it is not installed"):
        _clip(tiny_clip, runtime="onnxruntime")
    with pytest.raises(ValueError, match="int8 runs on ONNX Runtime"):
        _clip(tiny_clip, dtype="int8")


def test_an_export_is_made_once_per_weights_and_a_damaged_one_made_again(tiny_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("MM_ASSETS_CACHE", str(tmp_path))
    first = _clip(tiny_clip, dtype="float32", runtime="onnxruntime")
    exports = sorted(tmp_path.rglob("*.onnx"))
    assert [p.name for p in exports] == ["image.onnx", "text.onnx"]
    written = {p: p.stat().st_mtime_ns for p in exports}
    _clip(tiny_clip, dtype="float32", runtime="onnxruntime")
    assert {p: p.stat().st_mtime_ns for p in exports} == written, "a second load exports nothing"
    exports[0].write_bytes(b"not a graph")
    again = _clip(tiny_clip, dtype="float32", runtime="onnxruntime")
    images = [gradient(50, 50, 1)]
    assert _min_cosine(first, again, images, ["a"]) > 0.9999 and exports[0].stat().st_size > 1000
    assert not list(tmp_path.rglob(".export-*")), "no temporary export is left behind"


# Loads the encoder as `mm-assets run` and search do, in a process of its own, and reports what it
# imported and what it embedded.
EXPORT_ONLY_PROCESS = """
import json, sys
import numpy as np
from mm_assets.config import EncoderConfig
from mm_assets.encoders.load import load_encoder
from mm_assets_tests.corpus import gradient
encoder = load_encoder(EncoderConfig(name="clip", model=sys.argv[1], dtype=sys.argv[2]))
images = [gradient(64, 48, i) for i in range(3)]
np.save(sys.argv[3], np.concatenate([encoder.embed_images(images), encoder.embed_texts(json.loads(sys.argv[4]))]))
print(json.dumps({"class": type(encoder).__name__, "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules, "metadata": encoder.metadata()}))
"""


def _load_in_a_process(model: Path, dtype: str, texts: list[str], out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", EXPORT_ONLY_PROCESS, str(model), dtype, str(out), json.dumps(texts)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_once_exported_an_encoder_loads_without_torch_and_embeds_the_same(tiny_clip, tmp_path, monkeypatch, dtype):
    monkeypatch.setenv("MM_ASSETS_CACHE", str(tmp_path / "cache"))
    texts = ["a dog on a beach", "x", "word " * 120, "café, naïve 東京 🐕"]
    first = load_encoder(EncoderConfig(name="clip", model=str(tiny_clip), dtype=dtype))
    assert isinstance(first, ClipEncoder), "the first load exports through PyTorch"
    images = [gradient(64, 48, i) for i in range(3)]
    expected = np.concatenate([first.embed_images(images), first.embed_texts(texts)])

    seen = _load_in_a_process(tiny_clip, dtype, texts, tmp_path / "vectors.npy")
    assert seen["class"] == "ExportedClipEncoder"
    assert not seen["torch"] and not seen["transformers"], "loaded from the export alone"
    # The same sessions and tokens: the same vectors, and the same record of what made them.
    assert np.array_equal(np.load(tmp_path / "vectors.npy"), expected)
    assert seen["metadata"] == json.loads(json.dumps(first.metadata()))


def test_the_exported_tokenizer_cuts_text_as_transformers_does(tiny_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("MM_ASSETS_CACHE", str(tmp_path))
    config = EncoderConfig(name="clip", model=str(tiny_clip), dtype="int8")
    reference = load_encoder(config).tokenizer
    exported = load_encoder(config)
    assert isinstance(exported, ExportedClipEncoder)
    texts = ["", "A Dog!", "word " * 120, "tab\tand\nnewline", "café naïve 東京 🐕", "<|endoftext|> inside"]
    for text in texts:
        ids = reference([text], truncation=True, max_length=exported.max_tokens)["input_ids"][0]
        assert exported.tokenizer.encode(text).ids == ids, text


def test_an_export_is_used_only_as_its_check_allows_and_a_damaged_one_is_redone(
    tiny_clip, tmp_path, monkeypatch, cpu_without_bf16
):
    monkeypatch.setenv("MM_ASSETS_CACHE", str(tmp_path))
    monkeypatch.setattr("mm_assets.encoders.precision.MIN_COSINE_TO_FP32", 0.99)
    config = EncoderConfig(name="clip", model=str(tiny_clip))  # auto: int8 on this CPU while it stays close
    assert isinstance(load_encoder(config), ClipEncoder)
    assert isinstance(load_encoder(config), ExportedClipEncoder)
    # A stricter bar: the recorded check no longer passes, so `auto` loads PyTorch float32 again.
    monkeypatch.setattr("mm_assets.encoders.precision.MIN_COSINE_TO_FP32", 1.01)
    strict = load_encoder(config)
    assert isinstance(strict, ClipEncoder) and (strict.precision, strict.runtime) == ("float32", "torch")
    monkeypatch.setattr("mm_assets.encoders.precision.MIN_COSINE_TO_FP32", 0.99)
    (summary,) = tmp_path.rglob(EXPORT_SUMMARY)
    summary.write_text('{"precision": "in')  # cut short
    assert isinstance(load_encoder(config), ClipEncoder), "a damaged export is made again"
    assert isinstance(load_encoder(config), ExportedClipEncoder)


def test_an_edited_model_config_is_exported_again(tiny_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("MM_ASSETS_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    shutil.copytree(tiny_clip, model)
    config = EncoderConfig(name="clip", model=str(model), dtype="int8")
    load_encoder(config)
    assert isinstance(load_encoder(config), ExportedClipEncoder)
    processor = model / "processor_config.json"
    settings = json.loads(processor.read_text())
    settings["image_processor"]["image_mean"] = [0.5, 0.5, 0.5]
    processor.write_text(json.dumps(settings))
    edited = load_encoder(config)
    assert isinstance(edited, ClipEncoder), "same weights, other preprocessing: not the old export"
    assert edited.preprocess.mean == (0.5, 0.5, 0.5)


def test_an_exported_encoder_opens_the_other_tower_only_when_first_used(tiny_clip, tmp_path, monkeypatch):
    """An image-only step never pays for the text session; a later text embeds as with both open."""
    monkeypatch.setenv("MM_ASSETS_CACHE", str(tmp_path / "cache"))
    config = EncoderConfig(name="clip", model=str(tiny_clip), dtype="int8")
    load_encoder(config)  # exports
    both = load_encoder(config)
    images_only = load_encoder(config, {"image"})
    assert isinstance(images_only, ExportedClipEncoder) and set(images_only._onnx) == {"image"}
    images = [gradient(64, 48, i) for i in range(2)]
    assert np.array_equal(images_only.embed_images(images), both.embed_images(images))
    assert np.array_equal(images_only.embed_texts(["a red square"]), both.embed_texts(["a red square"]))
    assert set(images_only._onnx) == {"image", "text"}


def test_a_large_weights_digest_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    """Hashing ViT-B/32's 600 MB took 0.8 s of every run: the digest is kept by path and stat in the
    cache, and an edited file is hashed again."""
    from mm_assets.encoders import resolve

    monkeypatch.setenv("MM_ASSETS_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(np.random.default_rng(0).bytes(resolve._REMEMBERED_BYTES + 1))
    first = resolve.weights_hash(model)
    resolve._hash_files.cache_clear()  # a new process
    monkeypatch.setattr(resolve, "_sha256", lambda path: pytest.fail(f"{path} was hashed again"))
    assert resolve.weights_hash(model) == first
    monkeypatch.undo()
    monkeypatch.setenv("MM_ASSETS_CACHE", str(tmp_path / "cache"))
    with weights.open("r+b") as fh:  # same size, new content
        fh.write(b"\0" * 16)
    resolve._hash_files.cache_clear()
    assert resolve.weights_hash(model) != first
