"""Per-user and overall analytics built from the platform's events."""
