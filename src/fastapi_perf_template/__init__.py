"""fastapi-perf-template: a Copier template for fast FastAPI services and the CLI to render it."""
