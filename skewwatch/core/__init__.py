"""The pure core shared by agent and collector: the fact model and fingerprints (no I/O)."""
