"""Training of the return-risk model: time-based split, candidate families, metrics, tracking."""
