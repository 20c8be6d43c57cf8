"""The scoring service: REST API over the champion model with online feature lookup."""
