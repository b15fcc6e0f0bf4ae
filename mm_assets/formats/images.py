"""Decode images safely and convert every mode to the 8-bit RGB a CLIP model expects."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mm_assets.formats import BadFile

# Pillow's check is a warning below 2× its limit; we apply our own, configurable limit instead.
Image.MAX_IMAGE_PIXELS = None


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only; reject non-images and decompression bombs before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged metadata (EXIF, TIFF tags) is skipped, not fatal
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadFile("not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadFile(f"corrupt image header: {exc}") from None
    pixels = img.width * img.height
    if pixels > max_pixels:
        raise BadFile(
            f"decompression bomb: {img.width}x{img.height} = {pixels:,} pixels exceeds the limit of {max_pixels:,}"
        )
    if pixels == 0:
        raise BadFile("image has zero width or height")
    return img


_DECODE_BLOCK_BYTES = 16 * 2**20


def decode_rgb(data: bytes, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """Decode to RGB with EXIF orientation applied.

    ``min_side``: the smallest side the caller needs; JPEGs are then decoded at a reduced DCT scale
    (``draft``) that still covers it, which is several times faster than a full decode.
    """
    img = open_image(data, max_pixels)
    # Whole files handed to the decoder at once (up to a bound): Pillow takes the GIL back between
    # blocks (64 kB by default), and with another thread running Python each block waited for it: a
    # camera JPEG took 70 ms to decode instead of 16.
    img.decodermaxblock = min(max(len(data), img.decodermaxblock), _DECODE_BLOCK_BYTES)
    if min_side and img.format == "JPEG":
        img.draft(img.mode if img.mode == "CMYK" else "RGB", (min_side, min_side))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": orientation then defaults to none
            img.load()
            img = ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadFile(f"truncated or corrupt image data: {exc}") from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: 16-bit scaled (not clipped), alpha composited on white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = Image.fromarray(_scaled_to_8_bits(img), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def _scaled_to_8_bits(img: Image.Image, rows_at_once: int = 512) -> np.ndarray:
    """16-bit, 32-bit and float greyscale scaled (not clipped) to 8 bits, a band of rows at a time:
    peak memory is the 8-bit result plus one band, not the image widened to float64 (which made four
    large 16-bit PNGs in the decode pool cost gigabytes)."""
    arr = np.asarray(img)
    if img.mode == "F":
        peak = 1.0 if arr.max() <= 1.0 else 255.0
    else:
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
    out = np.empty(arr.shape, dtype=np.uint8)
    for top in range(0, arr.shape[0], rows_at_once):
        band = arr[top : top + rows_at_once].astype(np.float32)
        out[top : top + rows_at_once] = np.clip(band * (255.0 / peak) + 0.5, 0, 255)
    return out


def encode_jpeg(image: Image.Image, max_side: int) -> bytes:
    """An RGB JPEG no larger than ``max_side``: what an image chunk cut out of a file stores."""
    image = to_rgb(image)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


# pHash (Zauner 2010, as the imagehash package computes it): the signs of the lowest 8x8 DCT
# frequencies of a 32x32 greyscale copy, against their median. Robust to resizing, recompression and
# colour shifts; the 32-point DCT is one matrix product, so no scipy for it.
_HASH_SIDE, _HASH_BITS_SIDE = 32, 8
_k = np.arange(_HASH_SIDE)
_DCT = np.cos(np.pi * (2 * _k[None, :] + 1) * _k[:, None] / (2 * _HASH_SIDE))[:_HASH_BITS_SIDE]


def perceptual_hash(image: Image.Image) -> int:
    """The image's 64-bit perceptual hash as a signed 64-bit integer (how Parquet and DuckDB store
    it); near-duplicates differ in few bits (``hamming``)."""
    grey = np.asarray(image.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS), np.float64)
    low = _DCT @ grey @ _DCT.T
    bits = (low > np.median(low)).ravel()
    return int(np.packbits(bits).view(">i8")[0])


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bits that differ between perceptual hashes (int64), elementwise."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.int64), np.asarray(b, np.int64)).view(np.uint64))
