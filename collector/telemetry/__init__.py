"""The collector's own telemetry: OpenTelemetry metrics over OTLP/gRPC and ``GET /metrics``."""
