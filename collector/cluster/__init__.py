"""The collector's reading of the Kubernetes API: pods and namespaces, for the missed-injection
report (``collector.service.injection`` classifies what is read here)."""
