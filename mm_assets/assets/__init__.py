"""Thin Dagster wrappers: read shards, call domain code, write shards, emit metadata.

Asset bodies import torch-heavy domain code (encoders, training, evaluation, the tokenizer) when
they run, not at module level: every process that only loads the definitions (the daemon, the
webserver, each run and step worker) would otherwise pay seconds of imports.
"""
