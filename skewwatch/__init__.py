"""skewwatch: catches training-serving skew in LLM inference on Kubernetes."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
