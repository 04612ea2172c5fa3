"""CLI verb: data (to be written)."""
