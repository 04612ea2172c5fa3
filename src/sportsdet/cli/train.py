"""CLI verb: train (to be written)."""
