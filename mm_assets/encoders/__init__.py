"""Encoders: load CLIP models from the hub, the HF cache or a local directory, and embed batches."""
