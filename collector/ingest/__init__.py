"""gRPC ingest: the skewwatch.v1.Ingest/Stream server that agents stream facts to."""
