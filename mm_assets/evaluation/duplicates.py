"""How well duplicates are found: generated originals, each copied resized, recompressed, cropped and
colour-shifted; precision and recall of the pairs the duplicates asset groups, per kind of link."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageEnhance

from mm_assets.duplicates import pair_groups

SIZE = (640, 480)
TRANSFORMS = {
    "resized": lambda im: im.resize((SIZE[0] // 2, SIZE[1] // 2), Image.Resampling.BICUBIC),
    "recompressed": lambda im: Image.open(io.BytesIO(_jpeg(im, quality=25))),
    "cropped": lambda im: im.crop((32, 24, SIZE[0] - 32, SIZE[1] - 24)),  # 10% of each side's length off
    "colour_shifted": lambda im: ImageEnhance.Brightness(ImageEnhance.Color(im).enhance(0.6)).enhance(1.15),
}


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def original_image(seed: int) -> Image.Image:
    """A photo-like picture of its own: a smooth colour field with a few shapes on it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]] / 100.0
    field = sum(
        np.sin(x * rng.uniform(0.2, 2) + y * rng.uniform(0.2, 2) + rng.uniform(0, 6))[..., None] * rng.uniform(0, 1, 3)
        for _ in range(5)
    )
    field = (field - field.min()) / (np.ptp(field) or 1.0) * 255
    image = Image.fromarray(field.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = rng.integers(0, SIZE[0] - 120), rng.integers(0, SIZE[1] - 120)
        box = (x0, y0, x0 + rng.integers(40, 120), y0 + rng.integers(40, 120))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image


def write_copies(folder: Path, n_originals: int, seed: int = 0) -> dict[Path, tuple[str, str]]:
    """``n_originals`` JPEGs under ``folder/originals`` and a copy of each per transform under
    ``folder/<transform>``: path -> (the original's name, "original" or the transform)."""
    written = {}
    for i in range(n_originals):
        name = f"photo_{i:04d}"
        original = original_image(seed * 100_003 + i)
        for transform, make in {"original": lambda im: im, **TRANSFORMS}.items():
            path = folder / ("originals" if transform == "original" else transform) / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_jpeg(make(original)))
            written[path] = (name, transform)
    return written


def copy_detection_figures(
    pairs: pa.Table, paths_of: dict[str, list[str]], truth: dict[Path, tuple[str, str]]
) -> list[dict]:
    """Per kind of link (near, semantic, either): precision of the file pairs grouped together (the
    share that are copies of one original) and recall of each transform's (original, copy) pairs.
    ``paths_of``: chunk id -> every path of its file; ``truth``: write_copies's answer."""
    family = {str(path): name for path, (name, _) in truth.items()}
    rows = []
    for link in ("near", "semantic", "either"):
        chosen = pairs if link == "either" else pairs.filter(pa.compute.equal(pairs.column("link"), link))
        group_of = {p: g for c, g in pair_groups(chosen).items() for p in paths_of.get(c, []) if p in family}
        members: dict[str, list[str]] = {}
        for path, group in group_of.items():
            members.setdefault(group, []).append(path)
        grouped = [pair for paths in members.values() for pair in itertools.combinations(sorted(paths), 2)]
        right = sum(family[a] == family[b] for a, b in grouped)
        row = {"link": link, "precision": right / len(grouped) if grouped else None, "grouped pairs": len(grouped)}
        originals = {name: str(path) for path, (name, t) in truth.items() if t == "original"}
        for transform in TRANSFORMS:
            copies = [(originals[name], str(path)) for path, (name, t) in truth.items() if t == transform]
            found = sum(group_of.get(a) is not None and group_of.get(a) == group_of.get(b) for a, b in copies)
            row[f"recall {transform}"] = found / len(copies) if copies else None
        rows.append(row)
    return rows
