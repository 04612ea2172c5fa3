"""CLI verb: models (to be written)."""
