"""Real files for the tests: every supported format and mode, and every kind of bad input."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

RED, BLUE = (220, 30, 30), (30, 30, 220)


def gradient(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(3,), dtype=np.uint8)
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    arr = (base[None, None, :] * (1 - x) + 255 * y * x).clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.broadcast_to(arr, (height, width, 3)).copy(), "RGB")


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes(), quality=90)
    return buf.getvalue()


def write_good_images(folder: Path) -> dict[str, Path]:
    """One file per supported format and awkward mode; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}

    def save(name: str, image: Image.Image, **kw) -> None:
        files[name] = folder / name
        image.save(files[name], **kw)

    save("photo.jpg", gradient(640, 480, 1), quality=90)
    files["rotated.jpg"] = folder / "rotated.jpg"
    files["rotated.jpg"].write_bytes(jpeg_with_orientation(gradient(120, 60, 2), orientation=6))
    save("cmyk.jpg", Image.new("CMYK", (64, 64), (0, 255, 255, 0)))  # pure red in CMYK
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((*BLUE, 255), (0, 0, 32, 64))
    save("half_transparent.png", rgba)
    frames = [Image.new("P", (40, 40), 0), Image.new("P", (40, 40), 1)]
    for frame in frames:
        frame.putpalette([*RED, *BLUE] + [0] * 762)
    files["anim.gif"] = folder / "anim.gif"
    frames[0].save(files["anim.gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    save("gray16.png", Image.fromarray(np.full((48, 48), 40000, dtype=np.uint16)))
    save("gray.bmp", gradient(50, 40, 3).convert("L"))
    save("photo.webp", gradient(80, 60, 4))
    save("scan.tiff", gradient(70, 50, 5))
    save("really_png.jpg", gradient(64, 48, 6), format="PNG")  # type is decided by content
    return files


MARKDOWN = """# Beach guide

Dogs love the beach. A dog on a beach chases the waves and digs in the sand all afternoon.

## Safety

```
# not a heading, just a shell comment
```

Keep water nearby and watch for hot sand under small paws during the summer months.
"""


def write_texts(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "guide.md": folder / "guide.md",
        "utf16.txt": folder / "utf16.txt",
        "latin1.txt": folder / "latin1.txt",
        "long.txt": folder / "long.txt",
    }
    files["guide.md"].write_text(MARKDOWN, encoding="utf-8")
    files["utf16.txt"].write_bytes("Snow-covered mountains at dawn, über alles.".encode("utf-16"))
    files["latin1.txt"].write_bytes("Le café crème est très bon à Noël, déjà réservé.".encode("latin-1"))
    files["long.txt"].write_text(" ".join(f"sentence number {i} talks about sailing boats." for i in range(60)))
    return files


def write_bad_files(folder: Path, outside: Path) -> dict[str, str]:
    """Each bad input, mapped to a fragment of the quarantine reason it must get."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    photo = io.BytesIO()
    gradient(400, 300, 7).save(photo, "JPEG", quality=95)
    (folder / "truncated.jpg").write_bytes(photo.getvalue()[: len(photo.getvalue()) // 2])
    (folder / "text.png").write_text("this is plain text, not a picture\n")
    (folder / "binary.txt").write_bytes(photo.getvalue())
    (folder / "random.txt").write_bytes(bytes(range(256)) * 8)
    Image.new("1", (10_000, 10_000)).save(folder / "bomb.png")  # 100 M pixels in a few kB
    os.mkfifo(folder / "pipe.jpg")
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.txt").write_text("outside the source folder")
    (folder / "escape.txt").symlink_to(outside / "secret.txt")
    with open(os.fsencode(folder) + b"/caf\xe9.txt", "wb") as fh:
        fh.write(b"a Latin-1 file name")
    return {
        "zero.jpg": "empty file",
        "truncated.jpg": "truncated",
        "text.png": "named .png but the content is text",
        "binary.txt": "named .txt but the content is image data",
        "random.txt": "binary content",
        "bomb.png": "decompression bomb",
        "pipe.jpg": "not a regular file",
        "escape.txt": "symlink points outside the source folders",
        "caf\\xe9.txt": "not valid UTF-8",
    }
