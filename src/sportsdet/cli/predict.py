"""CLI verb: predict (to be written)."""
