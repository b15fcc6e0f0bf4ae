"""mm_assets: multimodal files to one shared embedding space, as Dagster assets over DuckDB."""

__version__ = "0.1.0"
