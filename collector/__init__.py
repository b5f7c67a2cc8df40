"""The skewwatch collector: ingest, store, evaluate, export and serve."""
