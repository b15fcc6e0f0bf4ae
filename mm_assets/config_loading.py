"""Settings read from a YAML file, the environment and options, and where each came from.

Resolution order: explicit arguments > environment (``MM_ASSETS_*``) > config file > defaults.
The config file is ``$MM_ASSETS_CONFIG`` or ``./mm_assets.yaml`` when present.
Relative paths in the file are relative to the file; elsewhere to the working directory.
The file is validated against the settings dataclasses (pydantic reads them as they are): a wrong
type, an unknown key or a bad value is one error that names the key and what is expected.
"""

from __future__ import annotations

import os
import typing
from dataclasses import asdict, replace
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from mm_assets.config import EncoderConfig, ExecutorConfig, Settings, normalise_model
from mm_assets.config_sections import ChunkingConfig, DuplicatesConfig, PolicyConfig

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
        encoders.append(replace(encoder, model=normalise_model(encoder.model, base)))
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
