"""Find model files locally, in the Hugging Face cache or on the hub, failing fast with a clear message."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from huggingface_hub import constants

from mm_assets.store.layout import write_text_atomically

# Only what transformers needs for a CLIP model; never pickled .bin or TF/Flax weights.
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]
_PROBE_TIMEOUT_S = 4.0


# Written beside a fine-tuned model's weights by the training step: how it was made.
LINEAGE_FILE = "mm_assets_lineage.json"


class ModelNotFoundError(RuntimeError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    model_id: str  # as configured: hub id or absolute local path
    local_dir: Path
    revision: str  # hub commit hash, or "sha256:<hash of the weights>" for a local directory

    def lineage(self) -> dict | None:
        """How a fine-tuned model was made (LINEAGE_FILE), or None for any other model."""
        path = self.local_dir / LINEAGE_FILE
        return json.loads(path.read_text()) if path.exists() else None


def weights_hash(directory: Path) -> str:
    """Identity of a local model's weights (its "revision"); cached while the files are unchanged."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelNotFoundError(
            f"{directory} has no *.safetensors weights; save the model with save_pretrained(safe_serialization=True)"
        )
    return _hash_files(_stamps(files))


def settings_hash(directory: Path) -> str:
    """Identity of a model's other files (model, tokenizer and processor configs): an ONNX export
    caches what they say, so an edit to one of them must not reuse it."""
    files = sorted(p for pattern in MODEL_FILES if pattern != "*.safetensors" for p in directory.glob(pattern))
    return _hash_files(_stamps(files))


def _stamps(files) -> tuple[tuple[str, int, int], ...]:
    return tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


@lru_cache(maxsize=64)
def _hash_files(files: tuple[tuple[str, int, int], ...], drop_keys: frozenset[str] = frozenset()) -> str:
    """Hash of the files' names and contents (cached while their stamps are unchanged); JSON files
    are hashed without ``drop_keys`` when some are given."""
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).name.encode())
        if drop_keys and path.endswith(".json"):
            content = json.loads(Path(path).read_bytes())
            if isinstance(content, dict):
                content = {k: v for k, v in content.items() if k not in drop_keys}
            digest.update(hashlib.sha256(json.dumps(content, sort_keys=True).encode()).digest())
        else:
            digest.update(_file_sha256(path))
    return "sha256:" + digest.hexdigest()[:16]


def cache_dir() -> Path:
    """``$MM_ASSETS_CACHE``, else ``$XDG_CACHE_HOME/mm_assets`` (``~/.cache/mm_assets``)."""
    if os.environ.get("MM_ASSETS_CACHE"):
        return Path(os.environ["MM_ASSETS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mm_assets"


# Weights of this size and more have their digest remembered across processes (file-digests.json in
# the cache), by path and stat: hashing ViT-B/32's 600 MB took 0.8 s of every `mm-assets run`.
_REMEMBERED_BYTES = 16 * 2**20
_DIGESTS = "file-digests.json"


def _stat_stamp(path: str) -> list[int]:
    """What changes whenever the content can have: size, mtime, ctime (not settable by hand), inode."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _file_sha256(path: str) -> bytes:
    stamp = _stat_stamp(path)
    if stamp[0] < _REMEMBERED_BYTES:
        return _sha256(path)
    memo = cache_dir() / _DIGESTS
    remembered: dict = {}
    try:
        loaded = json.loads(memo.read_text())
        remembered = loaded if isinstance(loaded, dict) else {}
        entry = remembered.get(path)
        if entry and entry["stamp"] == stamp:
            return bytes.fromhex(entry["sha256"])
    except (OSError, ValueError, LookupError, TypeError):  # none yet, or damaged: hashed again
        pass
    digest = _sha256(path)
    if _stat_stamp(path) == stamp:  # not written to while it was read
        remembered[path] = {"stamp": stamp, "sha256": digest.hex()}
        try:
            write_text_atomically(memo, json.dumps(remembered))
        except OSError:  # a read-only cache: hashed again next time
            pass
    return digest


def _sha256(path: str) -> bytes:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").digest()


def _how_to_supply(model: str) -> str:
    return (
        "Supply the model one of three ways: (1) a local directory written by save_pretrained "
        "(`--model /path/to/dir`, env MM_ASSETS_MODEL, or `model:` in the encoder config); "
        f"(2) the Hugging Face cache: on a machine with internet run `hf download {model}` and copy "
        f"{constants.HF_HUB_CACHE} here, then set HF_HUB_OFFLINE=1; (3) a hub id, on a machine that can "
        "reach huggingface.co. Without any model, `mm-assets demo` trains a small one offline."
    )


def _hub_unreachable_reason() -> str | None:
    """One quick request instead of the hub client's retries (which take ~25 s when offline)."""
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        urllib.request.urlopen(constants.ENDPOINT, timeout=_PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return None  # the hub answered, even if with an error page
    except (OSError, ValueError) as exc:
        return f"{constants.ENDPOINT} is unreachable ({getattr(exc, 'reason', exc)})"
    return None


def _cached_snapshot(model: str, revision: str | None) -> Path | None:
    if not (Path(constants.HF_HUB_CACHE) / f"models--{model.replace('/', '--')}").is_dir():
        return None  # not cached at all: said without importing the hub client (0.2 s)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, revision=revision, allow_patterns=MODEL_FILES, local_files_only=True))
    except Exception:  # not cached (the hub client raises several types for this)
        return None


def _is_path(model: str) -> bool:
    """A model named by a path (hub ids are ``owner/name``)."""
    return Path(model).expanduser().is_absolute() or model.startswith((".", "~")) or model.count("/") > 1


def resolve_model(model: str, revision: str | None = None) -> ResolvedModel:
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model directory {path} has no config.json. " + _how_to_supply(model))
        return ResolvedModel(model, path.resolve(), weights_hash(path))
    if _is_path(model):
        raise ModelNotFoundError(f"model directory {path} does not exist. " + _how_to_supply(model))
    local_dir = _cached_snapshot(model, revision)
    if local_dir is None:
        reason = _hub_unreachable_reason()
        if reason:
            raise ModelNotFoundError(
                f"model {model!r} is not a local directory, not in the Hugging Face cache, and {reason}. "
                + _how_to_supply(model)
            )
        try:
            from huggingface_hub import snapshot_download

            local_dir = Path(snapshot_download(model, revision=revision, allow_patterns=MODEL_FILES))
        except Exception as exc:
            raise ModelNotFoundError(
                f"could not download {model!r} from the hub: {exc}. " + _how_to_supply(model)
            ) from exc
    # Cached snapshots live in .../snapshots/<commit>/: that commit is the resolved revision.
    commit = local_dir.name if local_dir.parent.name == "snapshots" else weights_hash(local_dir)
    return ResolvedModel(model, local_dir, commit)


# The files that decide how a tokenizer splits text, and the keys in them that record only how it was
# loaded or last called (a tokenizer saved after use carries its padding and truncation settings).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
_TOKENIZER_STATE_KEYS = frozenset(
    {"truncation", "padding", "is_local", "local_files_only", "name_or_path", "_commit_hash"}
)


def tokenizer_identity(model: str, revision: str | None = None) -> str:
    """What a tokenizer is, by the content of its files, so that two models sharing a tokenizer (a
    fine-tuned model and its base, CLIP ViT-B/32 and ViT-L/14) cut text into the same chunks wherever
    they are stored. Never touches the network: a hub model that is not on this machine yet (or a
    folder without tokenizer files) is named by its id and revision."""
    path = Path(model).expanduser()
    directory = path if path.is_dir() else (None if _is_path(model) else _cached_snapshot(model, revision))
    files = [directory / name for name in TOKENIZER_FILES if (directory / name).is_file()] if directory else []
    if not files:  # loading it will say what is missing, when a step needs it
        return f"{model}@{revision or 'default'}"
    return _hash_files(_stamps(files), _TOKENIZER_STATE_KEYS)
