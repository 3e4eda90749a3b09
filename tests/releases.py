"""The template's releases: the commit behind each tag and the choice values each one shipped."""

from packaging.version import Version

# By commit, not by tag: a CI clone may have no tags, and the update tests rebuild the release
# history themselves from these commits (see the release steps in README.md).
RELEASE_COMMITS = {
    "0.1.0": "d8ac6f7bd5fb548bd66313a33baace7870df84da",
    "0.2.0": "9ac873c3c7d52cc37e01001db082e66e92e25ea4",
}
RELEASES = sorted(RELEASE_COMMITS, key=lambda version: Version(version))

# Every choice value ever released, by the release that introduced it. Projects store these
# values in .copier-answers.yml, so a value that disappears breaks `copier update` for every
# project that chose it: tests/test_rules.py holds copier.yml to this list. A value goes in here
# when it is added to copier.yml, under the version it will be released in.
RELEASED_CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "0.1.0": {
        "python_version": ("3.13", "3.12", "3.11"),
        "server": ("gunicorn", "uvicorn", "granian"),
        "json_encoder": ("orjson", "msgspec", "pydantic"),
        "db_driver": (
            "sqlalchemy-asyncpg",
            "asyncpg",
            "sqlalchemy-psycopg",
            "sqlalchemy-asyncmy",
            "sqlalchemy-aiosqlite",
            "none",
        ),
        "cache": ("redis", "memory", "none"),
    },
    "0.2.0": {
        "queue": ("arq", "celery", "none"),
    },
    # Unreleased: the next release's.
    "0.3.0": {
        "metrics": ("prometheus", "none"),
        "tracing": ("opentelemetry", "none"),
        "kubernetes": ("kustomize", "none"),
        "ci": ("github", "gitlab", "none"),
    },
}


def released_choices() -> dict[str, set[str]]:
    """Every choice value ever released (or about to be), by question."""
    merged: dict[str, set[str]] = {}
    for choices in RELEASED_CHOICES.values():
        for question, values in choices.items():
            merged.setdefault(question, set()).update(values)
    return merged
