"""The skewwatch agent: the in-pod sidecar that collects facts and streams them to a collector."""
