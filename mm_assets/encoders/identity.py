"""An encoder configuration's identity: its fingerprint, key, table and code version, and the record of
the model that wrote its vectors.

Identity is computed from the configuration alone, never by probing the machine, so the daemon, a CPU
worker and a GPU pod of one deployment agree on code versions, shard folders and table names. What a
machine actually did (the precision ``auto`` resolved to, the device, library versions) is recorded in
the encoder record written beside the shards and in each materialization's metadata.

Loading this module imports no torch: the definitions compute every code version from it.
"""

from __future__ import annotations

from dataclasses import asdict

from mm_assets.config import EncoderConfig
from mm_assets.hashing import short_hash
from mm_assets.store.shards import ShardStore
from mm_assets.store.tables import EMBEDDINGS, embedding_table_name

# Bumped when embedding code changes what it produces for the same model (part of every fingerprint).
EMBEDDING_CODE_VERSION = "1"
RECORD_FILE = "encoder.json"


def fingerprint(encoder: EncoderConfig) -> str:
    """What determines the vectors: model and revision (or, fine-tuned, the training settings and the
    base's fingerprint; fused, the weights and the fingerprint of the encoder fused with), precision
    as configured, modalities, code version.

    Device and batch size are left out on purpose: they change speed, not meaning. ``auto`` precision
    enters as ``auto``: it means "reduced precision only where it stays within cosine 0.999 of
    float32" on every machine (encoders/precision.py), so it names one embedding space everywhere.
    """
    if encoder.fuse:
        if encoder.base is None:
            raise ValueError(f"encoder {encoder.name!r} fuses but has no encoder to fuse with")
        model = {"fuse": asdict(encoder.fuse), "of": fingerprint(encoder.base)}
    elif encoder.fine_tune:
        if encoder.base is None:
            raise ValueError(f"encoder {encoder.name!r} is fine-tuned but has no base encoder")
        model = {"fine_tune": asdict(encoder.fine_tune), "base": fingerprint(encoder.base)}
    else:
        model = {"model": encoder.model, "revision": encoder.revision}
    return short_hash(
        {**model, "dtype": encoder.dtype, "modalities": sorted(encoder.modalities), "code": EMBEDDING_CODE_VERSION}
    )


def encoder_key(encoder: EncoderConfig) -> str:
    """Shard folder and table suffix: readable name plus fingerprint, so old and new live side by side."""
    return f"{encoder.name}_{fingerprint(encoder)}"


def table_name(encoder: EncoderConfig) -> str:
    return embedding_table_name(encoder_key(encoder))


def code_version(encoder: EncoderConfig) -> str:
    """The Dagster code version of the encoder's assets: a new fingerprint marks exactly them stale."""
    return fingerprint(encoder)


def shard_folder(key: str) -> str:
    """Where the embeddings shards of one encoder key live in the shard store."""
    return ShardStore.shard_dir(EMBEDDINGS, key)


def record(encoder: EncoderConfig, model_metadata: dict) -> dict:
    """What is written beside an encoder key's shards and copied into the vector database: the
    identity plus the model that wrote the vectors (Encoder.metadata())."""
    info = {**model_metadata, "encoder": encoder.name, "fingerprint": fingerprint(encoder)}
    if encoder.fuse:  # lineage to both inputs: the image and its caption, through the same model
        info["fusion"] = {
            "inputs": ["image", "caption"],
            "mode": encoder.fuse.mode,
            "image_weight": encoder.fuse.image_weight,
            "of": encoder_key(encoder.base),
        }
        if encoder.fuse.mode == "late":  # the two vectors side by side
            info["embedding_dim"] = 2 * int(model_metadata["embedding_dim"])
    return info


def write_record(store: ShardStore, key: str, info: dict) -> None:
    store.write_json(f"{shard_folder(key)}/{RECORD_FILE}", info)


def read_record(store: ShardStore, key: str) -> dict | None:
    name = f"{shard_folder(key)}/{RECORD_FILE}"
    return store.read_json(name) if store.exists(name) else None


def stored_records(store: ShardStore) -> dict[str, dict]:
    """Encoder key -> record, for every key in the store that has both shards and a record (a key
    whose first batch is still being written has neither yet, or no shard: it waits for the next build)."""
    records = {}
    for key in store.subdirectories(ShardStore.shard_dir(EMBEDDINGS)):
        found = read_record(store, key)
        if found is not None and store.list(shard_folder(key)):
            records[key] = found
    return records


def recorded_config(record: dict) -> EncoderConfig:
    """The configuration that loads exactly the model a record describes (search embeds queries with
    it, whatever the settings say today). A local model's revision is the hash of its weights, which
    the loader checks; a hub model's is the commit to download."""
    revision = record["revision"]
    return EncoderConfig(
        name=record["encoder"],
        model=record["model_id"],
        revision=None if revision.startswith("sha256:") else revision,
        dtype=record["dtype"],
        device="cpu" if record["dtype"] == "int8" else "auto",  # int8 runs on ONNX Runtime's CPU kernels
        modalities=tuple(record["modalities"]),
    )
