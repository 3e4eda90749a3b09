"""The README documents every setting, and .env.example names only settings that exist."""

from pathlib import Path

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from app.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]


def env_names(model: type[BaseModel], prefix: str = "") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            # Settings of their own (OTEL_*): read by their own names, without a prefix.
            names |= env_names(annotation)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (PROJECT / "README.md").read_text()

    missing = {name for name in env_names(Settings) if f"| `{name}` |" not in readme}

    assert not missing


def test_env_example_names_only_real_settings() -> None:
    lines = (PROJECT / ".env.example").read_text().splitlines()
    names = {line.lstrip("# ").split("=")[0] for line in lines if "=" in line}

    assert names
    assert names <= env_names(Settings)
