"""Baselines: last-known-good configuration and performance at a known load band."""
