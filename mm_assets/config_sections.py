"""The settings sections of the pipeline's steps: chunking, duplicates and moderation policies, each
validated as it is read (the settings file is read into these dataclasses by pydantic, as they are).
The settings as a whole, and the encoders, are in config.py."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ConfigDict

from mm_assets.store.tables import MODALITY_CODES

# Unknown keys in the file are mistakes (a misspelt setting would otherwise be silently ignored).
FILE_RULES = ConfigDict(extra="forbid")
# How text may be cut (mm_assets/chunking/text.py versions each).
TEXT_STRATEGIES = ("fixed", "heading", "sentence", "semantic")


@dataclass(frozen=True)
class PolicyConfig:
    """A moderation policy in natural language: a chunk is scored by its best cosine to any of the
    phrasings (embedded by the encoder's text tower) and flagged at or above the threshold, given, or
    chosen as the lowest that reaches ``target_precision`` on the labelled examples (captioned
    images whose label is in ``labels``; any other labelled image is a negative)."""

    __pydantic_config__ = FILE_RULES

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

    __pydantic_config__ = FILE_RULES

    near_bits: int = 10
    # A near pair's vectors must agree this much (None: hashes alone): a hash of a low-detail picture
    # (a shape on a plain ground) matches unrelated ones.
    near_min_cosine: float | None = 0.9
    semantic_cosine: float = 0.96
    encoder: str | None = None  # whose vectors are compared (default: the default encoder)
    # Each new chunk keeps its closest this many links of a kind (ties: the smallest chunk ids, so
    # copies link to the same few): 10,000 copies of one picture make ~160,000 links, not 50 million.
    links_per_chunk: int = 16
    # The modalities whose chunks are compared for semantic pairs (none listed: no semantic pass).
    semantic_modalities: tuple[str, ...] = ("image", "text", "audio")

    def __post_init__(self):
        if not 0 <= self.near_bits < 32:
            raise ValueError(f"duplicates.near_bits must be in [0, 32), not {self.near_bits}")
        if self.near_min_cosine is not None and not -1 <= self.near_min_cosine <= 1:
            raise ValueError(f"duplicates.near_min_cosine must be in [-1, 1] or null, not {self.near_min_cosine}")
        if not 0 < self.semantic_cosine <= 1:
            raise ValueError(f"duplicates.semantic_cosine must be in (0, 1], not {self.semantic_cosine}")
        if self.links_per_chunk < 1:
            raise ValueError(f"duplicates.links_per_chunk must be at least 1, not {self.links_per_chunk}")
        unknown = sorted(set(self.semantic_modalities) - set(MODALITY_CODES))
        if unknown:
            raise ValueError(f"duplicates.semantic_modalities: {unknown} are not among {list(MODALITY_CODES)}")


@dataclass(frozen=True)
class ChunkingConfig:
    """How each kind of file is cut into chunks (see mm_assets/chunking)."""

    __pydantic_config__ = FILE_RULES

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
        if self.text_strategy not in TEXT_STRATEGIES:
            raise ValueError(f"chunking.text_strategy must be one of {TEXT_STRATEGIES}, not {self.text_strategy!r}")
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
