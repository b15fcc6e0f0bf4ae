"""Find model files locally, in the Hugging Face cache or on the hub, failing fast with a clear message."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from huggingface_hub import constants, snapshot_download

# Only what transformers needs for a CLIP model; never pickled .bin or TF/Flax weights.
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]
_PROBE_TIMEOUT_S = 4.0


class ModelNotFoundError(RuntimeError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    model_id: str  # as configured: hub id or absolute local path
    local_dir: Path
    revision: str  # hub commit hash, or "sha256:<hash of the weights>" for a local directory


def weights_hash(directory: Path) -> str:
    """Identity of a local model's weights (its "revision"); cached while the files are unchanged."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelNotFoundError(
            f"{directory} has no *.safetensors weights; save the model with save_pretrained(safe_serialization=True)"
        )
    return _hash_files(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


@lru_cache(maxsize=32)
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(Path(path).name.encode())
        with open(path, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return "sha256:" + digest.hexdigest()[:16]


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


def resolve_model(model: str, revision: str | None = None) -> ResolvedModel:
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model directory {path} has no config.json. " + _how_to_supply(model))
        return ResolvedModel(model, path.resolve(), weights_hash(path))
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        raise ModelNotFoundError(f"model directory {path} does not exist. " + _how_to_supply(model))
    try:
        local = snapshot_download(model, revision=revision, allow_patterns=MODEL_FILES, local_files_only=True)
    except Exception:  # not cached (the hub client raises several types for this)
        reason = _hub_unreachable_reason()
        if reason:
            raise ModelNotFoundError(
                f"model {model!r} is not a local directory, not in the Hugging Face cache, and {reason}. "
                + _how_to_supply(model)
            ) from None
        try:
            local = snapshot_download(model, revision=revision, allow_patterns=MODEL_FILES)
        except Exception as exc:
            raise ModelNotFoundError(
                f"could not download {model!r} from the hub: {exc}. " + _how_to_supply(model)
            ) from exc
    local_dir = Path(local)
    # Cached snapshots live in .../snapshots/<commit>/: that commit is the resolved revision.
    commit = local_dir.name if local_dir.parent.name == "snapshots" else weights_hash(local_dir)
    return ResolvedModel(model, local_dir, commit)
