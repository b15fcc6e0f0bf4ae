"""Settings and encoder configurations, read from a YAML file and the environment.

Resolution order: explicit arguments > environment (``MM_ASSETS_*``) > config file > defaults.
The config file is ``$MM_ASSETS_CONFIG`` or ``./mm_assets.yaml`` when present.
Relative paths in the file are relative to the file; elsewhere to the working directory.
The file is validated against the dataclasses below (pydantic reads them as they are): a wrong type,
an unknown key or a bad value is one error that names the key and what is expected.
"""

from __future__ import annotations

import hashlib
import json
import os
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from mm_assets.store.layout import Layout
from mm_assets.store.tables import MODALITIES

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_MODALITIES = ("image", "text")  # a CLIP model's; an audio model (CLAP) lists audio (and text)
DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")
RUNTIMES = ("auto", "torch", "onnxruntime")  # where a CPU forward pass runs (encoders/runtime.py)
EXECUTORS = ("multiprocess", "in_process", "docker", "k8s")
# Settings converted in load_settings; the others (_PLAIN_SETTINGS) are read from the file as they are.
_SECTIONS = {
    "home",
    "store",
    "executor",
    "sources",
    "encoders",
    "chunking",
    "default_encoder",
    "policies",
    "duplicates",
}
_PLAIN_SETTINGS = (
    "max_image_pixels",
    "max_file_bytes",
    "max_media_seconds",
    "max_pdf_pages",
    "max_seconds_per_file",
    "hnsw",
    "hnsw_ef_search",
    "decode_workers",
    "eval_test_percent",
)


# Unknown keys in the file are mistakes (a misspelt setting would otherwise be silently ignored).
_FILE_RULES = ConfigDict(extra="forbid")


def short_hash(payload: object, length: int = 12) -> str:
    """Stable hash of JSON-serialisable data (sorted keys), used for fingerprints and ids."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class FineTuneConfig:
    """Contrastive fine-tuning of another configured encoder on the training split."""

    __pydantic_config__ = _FILE_RULES

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

    __pydantic_config__ = _FILE_RULES

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

    __pydantic_config__ = _FILE_RULES

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
class PolicyConfig:
    """A moderation policy in natural language: a chunk is scored by its best cosine to any of the
    phrasings (embedded by the encoder's text tower) and flagged at or above the threshold, given, or
    calibrated as the lowest that reaches ``target_precision`` on the labelled examples (captioned
    images whose label is in ``labels``; any other labelled image is a negative)."""

    __pydantic_config__ = _FILE_RULES

    name: str
    phrasings: tuple[str, ...]
    threshold: float | None = None
    target_precision: float | None = None
    labels: tuple[str, ...] = ()
    encoder: str | None = None  # whose vectors are scored (default: the default encoder)

    def __post_init__(self):
        if not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"policy name {self.name!r} must be letters, digits, '_' and '-'")
        if not [p for p in self.phrasings if p.strip()]:
            raise ValueError(f"policy {self.name!r}: give at least one phrasing")
        if (self.threshold is None) == (self.target_precision is None):
            raise ValueError(f"policy {self.name!r}: give either threshold or target_precision (with labels)")
        if self.target_precision is not None and not (0 < self.target_precision <= 1 and self.labels):
            raise ValueError(f"policy {self.name!r}: target_precision must be in (0, 1] and needs labels")


@dataclass(frozen=True)
class DuplicatesConfig:
    """What makes two items duplicates (mm_assets/duplicates.py): perceptual hashes of images and video
    frames within ``near_bits`` of 64 bits, confirmed by vectors at ``near_min_cosine`` (near), or
    vectors of ``encoder`` at or above ``semantic_cosine`` (semantic: the same scene or passage,
    reworded or re-shot)."""

    __pydantic_config__ = _FILE_RULES

    near_bits: int = 10
    # A near pair's vectors must agree this much (None: hashes alone): a hash of a low-detail picture
    # (a shape on a plain ground) matches unrelated ones.
    near_min_cosine: float | None = 0.9
    semantic_cosine: float = 0.96
    encoder: str | None = None  # whose vectors are compared (default: the default encoder)
    # Each new chunk keeps its closest this many links of a kind (ties: the smallest chunk ids, so
    # copies link to the same few): 10,000 copies of one picture make ~160,000 links, not 50 million.
    links_per_chunk: int = 16

    def __post_init__(self):
        if not 0 <= self.near_bits < 32:
            raise ValueError(f"duplicates.near_bits must be in [0, 32), not {self.near_bits}")
        if self.near_min_cosine is not None and not -1 <= self.near_min_cosine <= 1:
            raise ValueError(f"duplicates.near_min_cosine must be in [-1, 1] or null, not {self.near_min_cosine}")
        if not 0 < self.semantic_cosine <= 1:
            raise ValueError(f"duplicates.semantic_cosine must be in (0, 1], not {self.semantic_cosine}")
        if self.links_per_chunk < 1:
            raise ValueError(f"duplicates.links_per_chunk must be at least 1, not {self.links_per_chunk}")


@dataclass(frozen=True)
class ChunkingConfig:
    """How each kind of file is cut into chunks (see mm_assets/chunking)."""

    __pydantic_config__ = _FILE_RULES

    tokenizer: str | None = None  # None: the default encoder's model
    max_tokens: int = 77  # CLIP's text context, special tokens included
    overlap_tokens: int = 16
    text_strategy: str = "heading"  # fixed | heading | sentence | semantic (mm_assets/chunking/text.py)
    semantic_percentile: float = 90.0  # semantic: break where neighbouring sentences diverge more than this share
    image_tiles: int = 0  # n > 1 adds an n×n grid of tiles per image besides the whole image
    pdf_render_pages: bool = False  # also embed each PDF page as an image (scans, slides, diagrams)
    video_every_seconds: float = 5.0  # a frame at least this often
    video_scene_threshold: float | None = 0.1  # also a frame at each cut (colour shift, 0-1); None: off
    video_max_frames: int = 2000
    audio_window_seconds: float = 10.0  # CLAP's input length
    audio_overlap_seconds: float = 2.0

    def __post_init__(self):
        if self.max_tokens < 8:
            raise ValueError("chunking.max_tokens must be at least 8")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError("chunking.overlap_tokens must be between 0 and half of max_tokens")
        from mm_assets.chunking.text import STRATEGY_VERSIONS  # here: the chunking package imports this module

        if self.text_strategy not in STRATEGY_VERSIONS:
            raise ValueError(
                f"chunking.text_strategy must be one of {sorted(STRATEGY_VERSIONS)}, not {self.text_strategy!r}"
            )
        if not 0 < self.semantic_percentile < 100:
            raise ValueError("chunking.semantic_percentile must be between 0 and 100")
        if self.image_tiles == 1 or self.image_tiles < 0:
            raise ValueError("chunking.image_tiles must be 0 (off) or at least 2")
        if self.video_every_seconds <= 0 or self.video_max_frames < 1:
            raise ValueError("chunking.video_every_seconds must be > 0 and video_max_frames >= 1")
        if self.video_scene_threshold is not None and not 0 < self.video_scene_threshold < 1:
            raise ValueError("chunking.video_scene_threshold must be between 0 and 1, or null (off)")
        if not 0 <= self.audio_overlap_seconds < self.audio_window_seconds:
            raise ValueError("chunking.audio_overlap_seconds must be >= 0 and less than audio_window_seconds")


@dataclass(frozen=True)
class ExecutorConfig:
    """Which Dagster executor runs the steps of a run: ``multiprocess`` (one process per step, the
    default), ``in_process``, or on a cluster ``docker`` (dagster-docker) or ``k8s`` (dagster-k8s),
    each step in its own container. ``config`` is the executor's own config (image, namespace, env)."""

    __pydantic_config__ = _FILE_RULES

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
        # Fine-tuned encoders: their model lives in the home folder and their identity includes the base's.
        # Fused encoders: the model of the encoder they name, whose identity their own includes.
        resolved = []
        for enc in self.encoders:
            earlier = {b.name: b for b in resolved}
            if enc.fine_tune and enc.fuse:
                raise ValueError(f"encoder {enc.name!r}: fine_tune or fuse, not both (fuse with a fine-tuned one)")
            if enc.fine_tune:
                base = earlier.get(enc.fine_tune.base)
                if base is None or base.fine_tune or base.fuse:
                    raise ValueError(f"encoder {enc.name!r}: fine_tune.base must name a plain encoder listed before it")
                enc = replace(
                    enc,
                    model=str(self.layout.model_dir(enc.name)),
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
        object.__setattr__(self, "encoders", tuple(resolved))
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
        changed = replace(target, model=_normalise_model(model, Path.cwd()), revision=None)
        return replace(self, encoders=tuple(changed if e.name == target.name else e for e in self.encoders))


def _normalise_model(model: str, base: Path) -> str:
    """Local model directories become absolute paths (so the fingerprint does not depend on cwd)."""
    candidate = Path(model).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    if candidate.exists() or model.startswith((".", "/", "~")):
        return str(candidate.resolve())
    return model


def _path(value: str | os.PathLike, base: Path) -> Path:
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _store_url(value: str, base: Path) -> str:
    """URLs (``s3://…``, ``file:///…``) stay as they are; plain folders become absolute paths."""
    return value if "://" in value else str(_path(value, base))


def _checked(annotation, value, where: str, config_file):
    """``value`` as ``annotation`` (a type or one of the dataclasses above), or one ValueError naming
    the key, what is wrong and what was given."""
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        problems = exc.errors()
        first = problems[0]
        key = ".".join(str(part) for part in (where, *first["loc"]) if part != "")
        if first["type"] == "unexpected_keyword_argument":
            message = "unknown key"
        elif first["type"] == "value_error":
            message = first["msg"].removeprefix("Value error, ")
        else:
            message = f"{first['msg']} (got {first['input']!r})"
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ValueError(f"{config_file or 'settings'}: {key}: {message}{more}") from None


def _read_config_file(config_path: Path) -> dict:
    try:
        raw = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{config_path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{config_path}: expected a mapping at the top level")
    return raw


def load_settings(
    config_file: str | os.PathLike | None = None,
    *,
    home: str | os.PathLike | None = None,
    model: str | None = None,
    sources: list[str] | None = None,
) -> Settings:
    env = os.environ
    config_file = config_file or env.get("MM_ASSETS_CONFIG")
    if config_file is None and Path("mm_assets.yaml").exists():
        config_file = "mm_assets.yaml"
    raw: dict = {}
    base = Path.cwd()
    if config_file is not None:
        config_path = Path(config_file).expanduser().resolve()
        if not config_path.is_file():
            raise FileNotFoundError(f"config file not found: {config_path}")
        raw = _read_config_file(config_path)
        base = config_path.parent
    unknown = set(raw) - _SECTIONS
    unknown -= set(_PLAIN_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings in {config_file}: {sorted(unknown)}")

    def checked(annotation, key: str, default=None):
        return _checked(annotation, raw[key], key, config_file) if key in raw else default

    encoders = []
    for i, entry in enumerate(checked(list[dict], "encoders", [{"name": "clip"}])):
        if "base" in entry:  # set from fine_tune.base, never by hand
            raise ValueError(f"{config_file}: encoders.{i}.base: unknown key")
        encoder = _checked(EncoderConfig, entry, f"encoders.{i}", config_file)
        encoders.append(replace(encoder, model=_normalise_model(encoder.model, base)))
    hints = typing.get_type_hints(Settings)
    kwargs = {k: _checked(hints[k], raw[k], k, config_file) for k in _PLAIN_SETTINGS if k in raw}
    if "default_encoder" in raw:
        kwargs["default_encoder_name"] = checked(str, "default_encoder")
    store = checked(str | None, "store")
    settings = Settings(
        home=_path(checked(str, "home", ".mm_assets"), base),
        sources=tuple(_path(s, base) for s in checked(list[str], "sources", [])),
        encoders=tuple(encoders),
        chunking=checked(ChunkingConfig, "chunking", ChunkingConfig()),
        store_url=_store_url(store, base) if store else None,
        executor=checked(ExecutorConfig, "executor", ExecutorConfig()),
        policies=tuple(checked(list[PolicyConfig], "policies", [])),
        duplicates=checked(DuplicatesConfig, "duplicates", DuplicatesConfig()),
        **kwargs,
    )
    origins = {key: str(config_file) for key in raw if key not in ("encoders", "chunking", "duplicates")}
    for entry in raw.get("encoders", []):
        origins |= {f"encoders.{entry['name']}.{key}": str(config_file) for key in entry if key != "name"}
    for section in ("chunking", "duplicates"):
        origins |= {f"{section}.{key}": str(config_file) for key in raw.get(section) or {}}
    origins |= {f"policies.{entry['name']}": str(config_file) for entry in raw.get("policies") or []}
    overrides = (
        ("home", home, "--home", "MM_ASSETS_HOME"),
        ("store", None, None, "MM_ASSETS_STORE"),
        ("sources", sources, "sources argument", "MM_ASSETS_SOURCES"),
        ("model", model, "--model", "MM_ASSETS_MODEL"),
    )
    for key, argument, flag, variable in overrides:
        value, origin = (argument, flag) if argument else (env.get(variable), f"env {variable}")
        if not value:
            continue
        if key == "home":
            settings = replace(settings, home=_path(value, Path.cwd()))
        elif key == "store":
            settings = replace(settings, store_url=_store_url(value, Path.cwd()))
        elif key == "sources":
            chosen = value if argument else value.split(os.pathsep)
            settings = replace(settings, sources=tuple(_path(s, Path.cwd()) for s in chosen))
        else:
            settings = settings.with_model(value)
            key = f"encoders.{settings.default_encoder.name}.model"
        overridden = origins.get(key)
        origins[key] = origin + (f" (overrides {overridden})" if overridden else "")
    return replace(settings, origins=origins)


def describe_settings(settings: Settings) -> list[tuple[str, object, str]]:
    """Every effective setting as (key, value, where it came from), for `mm-assets config` and run logs."""
    rows = [
        ("home", str(settings.home)),
        ("sources", [str(s) for s in settings.sources]),
        ("store", settings.store_url),
    ]
    rows.append(("default_encoder", settings.default_encoder.name))
    for enc in settings.encoders:
        for name, value in asdict(enc).items():
            if name not in ("name", "base") and value is not None:
                rows.append((f"encoders.{enc.name}.{name}", value))
    rows += [(f"chunking.{name}", value) for name, value in asdict(settings.chunking).items()]
    rows += [(f"duplicates.{name}", value) for name, value in asdict(settings.duplicates).items()]
    rows += [("executor.kind", settings.executor.kind)]
    rows += [(f"policies.{p.name}", {k: v for k, v in asdict(p).items() if k != "name"}) for p in settings.policies]
    rows += [(name, getattr(settings, name)) for name in _PLAIN_SETTINGS]

    def origin(key: str) -> str:
        parts = key.split(".")
        for n in range(len(parts), 0, -1):  # the most specific origin recorded
            if ".".join(parts[:n]) in settings.origins:
                return settings.origins[".".join(parts[:n])]
        return "default"

    return [(key, value, origin(key)) for key, value in rows]
