"""A test Kubernetes API server, faithful to the real API's list, watch and error shapes
(:mod:`tests.kubeapi.server`)."""
