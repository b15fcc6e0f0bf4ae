"""Search: embed a query with the encoder recorded for a vector table, rank by cosine distance."""
