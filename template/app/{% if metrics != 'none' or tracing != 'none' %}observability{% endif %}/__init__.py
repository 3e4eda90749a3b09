"""Observability: metrics right across worker processes (with event-loop lag), and traces."""
