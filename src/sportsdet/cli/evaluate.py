"""CLI verb: evaluate (to be written)."""
