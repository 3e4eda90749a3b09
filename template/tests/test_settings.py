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


@pytest.mark.parametrize(
    ("hosts", "origins"),
    [
        ('["api.example.com", "*.example.org"]', '["https://app.example.com"]'),
        (" api.example.com, *.example.org ", "https://APP.example.com"),
    ],
)
def test_lists_are_json_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch, hosts: str, origins: str
) -> None:
    monkeypatch.setenv("TRUSTED_HOSTS", hosts)
    monkeypatch.setenv("CORS__ALLOW_ORIGINS", origins)

    settings = Settings()

    assert settings.trusted_hosts == ("api.example.com", "*.example.org")
    assert settings.cors.allow_origins == ("https://app.example.com",)


def test_a_list_that_is_broken_json_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_HOSTS", '["api.example.com"')

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert describe_error(caught.value).startswith("invalid configuration: TRUSTED_HOSTS: ")


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
