"""Feature store: Feast over the gold Delta tables."""
