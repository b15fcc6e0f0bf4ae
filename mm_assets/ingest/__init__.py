"""Ingest: find files in the source folders, batch them, inspect each one (type by content, hash,
metadata), quarantine what is bad, and look up captions and labels."""
