"""Storage: immutable Parquet shards (the source of truth) and the derived DuckDB serving file."""
