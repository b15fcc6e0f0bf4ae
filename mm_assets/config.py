"""The settings: what the pipeline reads, where it keeps things, and the encoders it runs, with the
rules each value must keep. Reading them from a file, the environment and options is in
config_loading.py; the sections of single steps (chunking, duplicates, policies) in
config_sections.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from mm_assets.config_sections import FILE_RULES, ChunkingConfig, DuplicatesConfig, PolicyConfig
from mm_assets.store.layout import Layout
from mm_assets.store.tables import MODALITIES

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_MODALITIES = ("image", "text")  # a CLIP model's; an audio model (CLAP) lists audio (and text)
DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")
RUNTIMES = ("auto", "torch", "onnxruntime")  # where a CPU forward pass runs (encoders/runtime.py)
EXECUTORS = ("multiprocess", "in_process", "docker", "k8s")


@dataclass(frozen=True)
class FineTuneConfig:
    """Contrastive fine-tuning of another configured encoder on the training split."""

    __pydantic_config__ = FILE_RULES

    base: str  # name of the encoder to start from
    epochs: int = 5
    learning_rate: float = 1e-5
    batch_size: int = 32
    weight_decay: float = 0.1
    freeze_text: bool = False
    freeze_vision: bool = False
    learn_temperature: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.freeze_text and self.freeze_vision:
            raise ValueError("fine_tune: freezing both towers leaves nothing to train")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("fine_tune: epochs must be >= 1 and batch_size >= 2 (contrastive batches)")


FUSION_MODES = ("intermediate", "late")


@dataclass(frozen=True)
class FuseConfig:
    """An item encoder: each captioned image (an item: a product photo and its description, say) as
    one vector made of its image vector and its caption's text vector, weighted by image_weight and
    1 - image_weight, from the model of the encoder named ``of`` (encoders/batch.fuse_vectors).
    retrieval_eval fits the weight on the training split and reports it beside the configured one."""

    __pydantic_config__ = FILE_RULES

    of: str  # name of the encoder whose model embeds both
    image_weight: float = 0.5
    # intermediate: one vector, the weighted sum renormalised. late: the two weighted vectors side by
    # side (twice the dimension), so a product is the weighted sum of the two cosines (score level).
    mode: str = "intermediate"

    def __post_init__(self):
        if not 0 <= self.image_weight <= 1:
            raise ValueError(f"fuse.image_weight must be in [0, 1], not {self.image_weight}")
        if self.mode not in FUSION_MODES:
            raise ValueError(f"fuse.mode must be one of {FUSION_MODES}, not {self.mode!r}")


@dataclass(frozen=True)
class EncoderConfig:
    """One named encoder: a CLIP model (hub id or local directory) and how to run it.

    With ``fine_tune`` set, the model is trained from the ``base`` encoder by the fine_tuned asset and
    lives under ``<home>/models/<name>``. With ``fuse`` set, it embeds items (captioned images) with
    the model of the encoder ``fuse.of`` (its ``base``). Its identity (fingerprint, key, table) is
    computed in mm_assets/encoders/identity.py.
    """

    __pydantic_config__ = FILE_RULES

    name: str
    model: str = DEFAULT_MODEL
    revision: str | None = None
    dtype: str = "auto"  # reduced precision where the hardware has it natively (see encoders/precision.py)
    device: str = "auto"
    runtime: str = "auto"  # ONNX Runtime on a CPU where installed, else PyTorch (see encoders/runtime.py)
    batch_size: int = 32
    modalities: tuple[str, ...] = DEFAULT_MODALITIES
    fine_tune: FineTuneConfig | None = None
    fuse: FuseConfig | None = None
    base: EncoderConfig | None = None  # set by Settings: what a fine-tuned or fused encoder starts from

    def __post_init__(self):
        if not self.name.replace("_", "").isalnum() or not self.name[0].isalpha():
            raise ValueError(f"encoder name {self.name!r} must be letters, digits and '_', starting with a letter")
        if self.dtype not in DTYPES:
            raise ValueError(f"encoder {self.name!r}: dtype must be one of {DTYPES}, not {self.dtype!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"encoder {self.name!r}: runtime must be one of {RUNTIMES}, not {self.runtime!r}")
        if (self.runtime, self.dtype) in {("torch", "int8"), ("onnxruntime", "bfloat16"), ("onnxruntime", "float16")}:
            raise ValueError(
                f"encoder {self.name!r}: dtype {self.dtype} does not run on runtime {self.runtime} "
                "(int8 runs on onnxruntime; bfloat16 and float16 on torch)"
            )
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise ValueError(f"encoder {self.name!r}: modalities must be a non-empty subset of {MODALITIES}")

    @property
    def trained_here(self) -> bool:
        """Its model is written by a fine_tuned asset (its own, or that of the encoder it fuses with)."""
        return self.fine_tune is not None or bool(self.fuse and self.base and self.base.trained_here)

    @property
    def awaiting_training(self) -> bool:
        """An encoder whose model a fine_tuned asset has not written yet."""
        return self.trained_here and not Path(self.model).exists()


@dataclass(frozen=True)
class ExecutorConfig:
    """Which Dagster executor runs the steps of a run: ``multiprocess`` (one process per step, the
    default), ``in_process``, or on a cluster ``docker`` (dagster-docker) or ``k8s`` (dagster-k8s),
    each step in its own container. ``config`` is the executor's own config (image, namespace, env)."""

    __pydantic_config__ = FILE_RULES

    kind: str = "multiprocess"
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise ValueError(f"executor.kind must be one of {EXECUTORS}, not {self.kind!r}")


@dataclass(frozen=True)
class InspectionLimits:
    """What inspecting one file may cost (see SECURITY.md): bytes read of an image, text or PDF, pixels
    decoded (images and video frames), the duration a recording has or claims, PDF pages."""

    max_image_pixels: int
    max_file_bytes: int
    max_media_seconds: float
    max_pdf_pages: int


@dataclass(frozen=True)
class Settings:
    home: Path
    sources: tuple[Path, ...] = ()
    # Manifests and shards: a folder or an fsspec URL (s3://bucket/prefix); None = the home folder.
    store_url: str | None = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    encoders: tuple[EncoderConfig, ...] = (EncoderConfig(name="clip"),)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    max_image_pixels: int = 89_478_485  # Pillow's own decompression-bomb threshold
    max_file_bytes: int = 512 * 1024 * 1024
    max_media_seconds: float = 24 * 3600  # longer recordings (or headers claiming so) are quarantined
    max_pdf_pages: int = 10_000
    max_seconds_per_file: float = 600.0  # chunking a file that takes longer stops and quarantines it
    hnsw: bool = False
    hnsw_ef_search: int | None = None  # HNSW candidates per query (DuckDB's default 64); more = higher recall
    decode_workers: int = max(1, min(8, os.cpu_count() or 1))
    eval_test_percent: int = 20  # share of captioned images held out for evaluation (by content hash)
    default_encoder_name: str | None = None  # what search uses without --encoder (default: the first)
    policies: tuple[PolicyConfig, ...] = ()  # moderation policies (mm_assets/moderation.py)
    duplicates: DuplicatesConfig = field(default_factory=DuplicatesConfig)
    # Where each setting came from when not the default ("mm_assets.yaml", "env MM_ASSETS_MODEL", "--home").
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        names = [e.name for e in self.encoders]
        if not names:
            raise ValueError("at least one encoder must be configured")
        if len(set(names)) != len(names):
            raise ValueError(f"encoder names must be unique: {names}")
        # The encoders as given, resolved once here (a frozen dataclass: set through object).
        object.__setattr__(self, "encoders", resolved_encoders(self.encoders, self.layout))
        if self.default_encoder_name and self.default_encoder_name not in names:
            raise ValueError(f"default_encoder {self.default_encoder_name!r} is not a configured encoder: {names}")
        policy_names = [p.name for p in self.policies]
        if len(set(policy_names)) != len(policy_names):
            raise ValueError(f"policy names must be unique: {policy_names}")
        for policy in self.policies:
            if policy.encoder is not None and policy.encoder not in names:
                raise ValueError(f"policy {policy.name!r}: encoder {policy.encoder!r} is not configured: {names}")
        if self.duplicates.encoder is not None and self.duplicates.encoder not in names:
            raise ValueError(f"duplicates.encoder {self.duplicates.encoder!r} is not configured: {names}")

    def policy_encoder(self, policy: PolicyConfig) -> EncoderConfig:
        """The encoder whose vectors a policy scores."""
        return self.encoder(policy.encoder) if policy.encoder else self.default_encoder

    @property
    def fused_items(self) -> bool:
        """Some encoder embeds items: captioned images get an item chunk (image + caption)."""
        return any(e.fuse for e in self.encoders)

    @property
    def duplicates_encoder(self) -> EncoderConfig:
        """The encoder whose vectors find semantic duplicates."""
        return self.encoder(self.duplicates.encoder) if self.duplicates.encoder else self.default_encoder

    @property
    def default_encoder(self) -> EncoderConfig:
        return self.encoder(self.default_encoder_name) if self.default_encoder_name else self.encoders[0]

    @property
    def tokenizer_model(self) -> str:
        """Chunks are measured in the default encoder's tokens (a fine-tuned model keeps its base's)."""
        encoder = self.default_encoder
        if encoder.fine_tune:
            encoder = self.encoder(encoder.fine_tune.base)
        return self.chunking.tokenizer or encoder.model

    @property
    def inspection_limits(self) -> InspectionLimits:
        return InspectionLimits(self.max_image_pixels, self.max_file_bytes, self.max_media_seconds, self.max_pdf_pages)

    @property
    def layout(self) -> Layout:
        return Layout(self.home, self.store_url)

    @property
    def db_path(self) -> Path:
        return self.layout.db_path

    def encoder(self, name: str) -> EncoderConfig:
        for enc in self.encoders:
            if enc.name == name:
                return enc
        raise KeyError(f"no encoder named {name!r}; configured: {[e.name for e in self.encoders]}")

    def with_model(self, model: str) -> Settings:
        """The same settings with the default encoder's model replaced (``--model`` / MM_ASSETS_MODEL)."""
        target = self.default_encoder
        if target.fine_tune:
            raise ValueError(f"--model cannot replace {target.name!r}: it is fine-tuned from {target.fine_tune.base!r}")
        changed = replace(target, model=normalise_model(model, Path.cwd()), revision=None)
        return replace(self, encoders=tuple(changed if e.name == target.name else e for e in self.encoders))


def resolved_encoders(configured: tuple[EncoderConfig, ...], layout: Layout) -> tuple[EncoderConfig, ...]:
    """The encoders with what they derive from filled in: a fine-tuned one's model is in the home
    folder and its identity includes its base's; a fused one runs the model of the encoder it names."""
    resolved = []
    for enc in configured:
        earlier = {b.name: b for b in resolved}
        if enc.fine_tune and enc.fuse:
            raise ValueError(f"encoder {enc.name!r}: fine_tune or fuse, not both (fuse with a fine-tuned one)")
        if enc.fine_tune:
            base = earlier.get(enc.fine_tune.base)
            if base is None or base.fine_tune or base.fuse:
                raise ValueError(f"encoder {enc.name!r}: fine_tune.base must name a plain encoder listed before it")
            enc = replace(
                enc,
                model=str(layout.model_dir(enc.name)),
                revision=None,
                base=base,
            )
        if enc.fuse:
            of = earlier.get(enc.fuse.of)
            if of is None or of.fuse:
                raise ValueError(f"encoder {enc.name!r}: fuse.of must name an encoder listed before it (not fused)")
            # The model and its precision are the other encoder's; images and captions both go in.
            enc = replace(
                of,
                name=enc.name,
                fuse=enc.fuse,
                fine_tune=None,
                base=of,
                modalities=("image", "text"),
                batch_size=enc.batch_size,
            )
        resolved.append(enc)
    return tuple(resolved)


def normalise_model(model: str, base: Path) -> str:
    """Local model directories become absolute paths (so the fingerprint does not depend on cwd)."""
    candidate = Path(model).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    if candidate.exists() or model.startswith((".", "/", "~")):
        return str(candidate.resolve())
    return model
