"""The original notebook's CNN (placeholder until the training helper lands it)."""
