"""A stand-in ``libnvidia-ml.so.1`` (C, compiled by the tests) and the probe that runs against it."""
