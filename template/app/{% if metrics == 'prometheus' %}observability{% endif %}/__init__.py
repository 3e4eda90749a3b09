"""Observability: Prometheus metrics that stay right across worker processes, and loop lag."""
