"""Data pipeline: load interactions, cut them into sessions, split, cache, batch."""
