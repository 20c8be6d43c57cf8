"""The model registry: challenger registration, the promotion gate, alias history, model cards."""
