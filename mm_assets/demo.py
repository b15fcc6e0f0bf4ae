"""An offline demo: a generated, labelled corpus and a small CLIP trained on it, end to end.

Images show one shape of one colour in one quadrant (4 × 5 × 4 = 80 labels, several renderings
each, with jittered size, place and background); their captions go to ``captions.csv``. A few short
markdown notes join them as text documents. The base encoder is a small randomly initialised CLIP
(the untrained start); the second encoder is that model fine-tuned by the pipeline's own asset.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from mm_assets.training.models import build_small_clip

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (45, 75, 215),
    "yellow": (230, 195, 30),
    "purple": (145, 55, 185),
}
POSITIONS = {"top left": (0, 0), "top right": (1, 0), "bottom left": (0, 1), "bottom right": (1, 1)}
TEMPLATES = (
    "a {colour} {shape} in the {position}",
    "{position}: a {colour} {shape}",
    "a picture of a {colour} {shape} at the {position}",
    "there is a {colour} {shape} in the {position} corner",
)
NOTES = {
    "shapes.md": "# Shapes\n\n## Circle\n\nA circle is round, with no corners at all.\n\n## Square\n\nA square has "
    "four equal sides and four corners.\n\n## Triangle\n\nA triangle has three sides.\n\n## Cross\n\n"
    "A cross is two bars that meet in the middle.\n",
    "colours.md": "# Colours\n\nRed like a fire truck, green like grass, blue like the sea, yellow like the sun and "
    "purple like a plum.\n",
    "corners.md": "# Corners of a picture\n\nThe top left, the top right, the bottom left and the bottom right.\n",
}
IMAGE_SIZE = 64


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:
        w = (x1 - x0) // 3
        draw.rectangle((x0 + w, y0, x1 - w, y1), fill=colour)
        draw.rectangle((x0, y0 + w, x1, y1 - w), fill=colour)


def render(shape: str, colour: str, position: str, rng: np.random.Generator) -> Image.Image:
    size = IMAGE_SIZE * 2
    background = rng.integers(200, 250, size=3)
    noise = rng.normal(0, 6, size=(size, size, 3))
    image = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8))
    qx, qy = POSITIONS[position]
    extent = int(rng.integers(size // 4, size * 2 // 5))
    cx = qx * size // 2 + int(rng.integers(extent // 2 + 2, size // 2 - extent // 2 - 2))
    cy = qy * size // 2 + int(rng.integers(extent // 2 + 2, size // 2 - extent // 2 - 2))
    box = (cx - extent // 2, cy - extent // 2, cx + extent // 2, cy + extent // 2)
    _draw_shape(ImageDraw.Draw(image), shape, box, COLOURS[colour])
    return image


def generate_corpus(folder: Path, per_label: int = 20, seed: int = 0) -> int:
    """Write the images, captions.csv and the notes; returns the number of images."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "notes").mkdir(parents=True, exist_ok=True)
    rows = []
    for shape, colour, position in itertools.product(SHAPES, COLOURS, POSITIONS):
        label = f"{colour} {shape} {position}"
        for i in range(per_label):
            name = f"images/{colour}_{shape}_{position.replace(' ', '_')}_{i}.png"
            render(shape, colour, position, rng).save(folder / name)
            template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
            rows.append(
                {
                    "path": name,
                    "caption": template.format(colour=colour, shape=shape, position=position),
                    "label": label,
                }
            )
    with open(folder / "captions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "caption", "label"])
        writer.writeheader()
        writer.writerows(rows)
    for name, text in NOTES.items():
        (folder / "notes" / name).write_text(text)
    return len(rows)


def vocabulary() -> tuple[str, ...]:
    words = set(SHAPES) | set(COLOURS) | {w for p in POSITIONS for w in p.split()}
    words |= {w for t in TEMPLATES for w in t.replace(":", " ").split() if not w.startswith("{")}
    return tuple(sorted(words))


def build_base_model(directory: Path, seed: int = 0) -> Path:
    """A small CLIP, randomly initialised: the demo's untrained start."""
    if (directory / "config.json").exists():
        return directory
    return build_small_clip(
        directory,
        seed,
        text_width=64,
        vision_width=96,
        text_layers=2,
        vision_layers=3,
        heads=4,
        image_size=IMAGE_SIZE,
        projection_dim=64,
        words=vocabulary(),
    )


def write_demo_config(home: Path, epochs: int = 40) -> Path:
    """Settings for the demo, as a file, so later commands (`--config`) and the UI use the same ones."""
    base = build_base_model(home / "models" / "demo_base")
    config = {
        "home": str(home),
        "sources": [str(home / "corpus")],
        "default_encoder": "demo_tuned",
        "encoders": [
            {"name": "demo_base", "model": str(base), "batch_size": 64},
            {
                "name": "demo_tuned",
                "batch_size": 64,
                "fine_tune": {
                    "base": "demo_base",
                    "epochs": epochs,
                    "learning_rate": 1e-3,
                    "batch_size": 64,
                    "weight_decay": 0.05,
                    "seed": 0,
                },
            },
            # Items: each captioned image with its caption as one vector, by the fine-tuned model.
            {"name": "demo_items", "batch_size": 64, "fuse": {"of": "demo_tuned", "image_weight": 0.5}},
        ],
    }
    path = home / "mm_assets.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
