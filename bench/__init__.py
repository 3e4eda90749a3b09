"""The benchmark that backs the template's speed claims: `uv run python -m bench`."""
