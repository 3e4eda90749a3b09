"""Settings come from the environment, nested groups included, and bad values fail clearly."""

import pytest
from pydantic import ValidationError

from app.settings import Settings, describe_error


def test_flat_and_nested_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("HTTP__CONNECT_TIMEOUT", "0.5")

    settings = Settings()

    assert settings.port == 9001
    assert settings.web_concurrency == 3
    assert settings.log_level == "warning"
    assert settings.http.connect_timeout == 0.5


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "eighty")
    monkeypatch.setenv("HTTP__READ_TIMEOUT", "-1")

    with pytest.raises(ValidationError) as caught:
        Settings()
    message = describe_error(caught.value)

    assert message.startswith("invalid configuration: ")
    assert "PORT" in message
    assert "HTTP__READ_TIMEOUT" in message
    assert "\n" not in message
