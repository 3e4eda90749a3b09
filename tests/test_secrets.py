"""No generated file carries a secret: every answer set of tests/matrix.py, scanned for leaks.

A focused scanner rather than detect-secrets: that one finds the same here (the placeholder
password, nothing else) but takes 3 to 4 s of CPU per project, a minute for the matrix. This one
looks for what leaks in practice: private keys, tokens of a known shape, a password in a URL, a
password or a random-looking value assigned to a name that says secret, password, token or key.
The only password a project may hold is the documented placeholder, refused in production.
"""

import math
import re
import secrets
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Render
from tests.matrix import COMBINATIONS, combination_id
from tests.test_render import project_files

PLACEHOLDER_PASSWORDS = {"change-me"}

# Secrets with a published shape, wherever they appear.
SHAPED = {
    "private key": re.compile(r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----"),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{40,})"),
    "GitLab token": re.compile(r"\bglpat-[\w-]{20,}"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "Stripe live key": re.compile(r"\b[rs]k_live_[A-Za-z0-9]{20,}"),
    "Google API key": re.compile(r"\bAIza[\w-]{35}"),
    "PyPI token": re.compile(r"\bpypi-AgE[\w-]{50,}"),
    "JSON web token": re.compile(r"\beyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}"),
}
# scheme://user:password@host
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:([^\s@/'\"]+)@")
# NAME = value, NAME: value, "NAME": "value" (Python, YAML, TOML, JSON, .env, INI). A name starts
# where a word does: trying every position inside one would take seconds over the matrix.
ASSIGNED = re.compile(
    r"(?i)(?<![\w.-])([\w.-]*(secret|passw(or)?d|token|key|credential)[\w.-]*)"
    r"[\"']?[ \t]*[:=][ \t]*([\"'])?([^\s\"',;(){}\[\]]+)"
)
# What generated secrets look like and words, identifiers and slugs do not: hex of 20 digits or
# more, or a token of 16 or more with upper case, lower case and digits; either with the entropy
# of a random string (detect-secrets' hex limit; 3.5 bits is below any random 20-character token
# and above most words of that length).
HEX = re.compile(r"[0-9a-f]{20,}|[0-9A-F]{20,}")
MIXED = re.compile(r"(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9+/=_.~-]{16,}")
MIN_HEX_BITS, MIN_MIXED_BITS = 3.0, 3.5


def bits_per_character(text: str) -> float:
    """Shannon entropy of the string's own characters."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(value: str) -> bool:
    if HEX.fullmatch(value) and re.search(r"[0-9]", value) and re.search(r"[a-fA-F]", value):
        return bits_per_character(value) >= MIN_HEX_BITS
    return bool(MIXED.fullmatch(value)) and bits_per_character(value) >= MIN_MIXED_BITS


def leaks(text: str) -> list[str]:
    """What in this text looks like a secret, each as `line N: kind`."""
    found: list[tuple[int, str]] = []
    for kind, pattern in SHAPED.items():
        found += [(match.start(), kind) for match in pattern.finditer(text)]
    for match in URL_PASSWORD.finditer(text):
        if match.group(1) not in PLACEHOLDER_PASSWORDS:
            found.append((match.start(), "password in a URL"))
    for match in ASSIGNED.finditer(text):
        name, value = match.group(1), match.group(5)
        if re.search(r"(?i)passw(or)?d", name) and value not in PLACEHOLDER_PASSWORDS:
            # A password is a leak whatever it looks like; a reference to one is not.
            if match.group(4) or not re.fullmatch(r"\$.*|[A-Z]\w*|str|None", value):
                found.append((match.start(), f"password assigned to {name}"))
        elif looks_random(value):
            found.append((match.start(), f"random-looking value assigned to {name}"))
    return [f"line {text.count(chr(10), 0, start) + 1}: {kind}" for start, kind in sorted(found)]


def scan(project: Path) -> list[str]:
    return [
        f"{path.relative_to(project)} {leak}"
        for path in project_files(project)
        for leak in leaks(path.read_text(errors="replace"))
    ]


@pytest.mark.parametrize("answers", COMBINATIONS, ids=combination_id)
def test_no_generated_file_carries_a_secret(render: Render, answers: dict[str, str]) -> None:
    assert scan(render(**answers)) == []


# Each secret is made when the test runs, so this repo never holds one that a scanner of its own
# (or a forge's push protection) would rightly refuse.
PLANTED = {
    "private key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow\n",
    "AWS access key id": "aws_access_key_id = " + "AKIA" + secrets.token_hex(8).upper(),
    "GitHub token": "GH=gh" + "p_" + secrets.token_hex(18),
    "password in a URL": f"DATABASE_URL: postgresql://app:{secrets.token_hex(6)}@db:5432/app",
    "password assigned to POSTGRES_PASSWORD": "      POSTGRES_PASSWORD: hunter2\n",
    "password assigned to password": 'password = "correct horse"',
    # The prefix makes sure of all three classes, which 32 random characters miss once in 200.
    "random-looking value assigned to JWT_SECRET": f"JWT_SECRET=Aa0{secrets.token_urlsafe(24)}",
    "random-looking value assigned to api_key": f'"api_key": "{secrets.token_hex(20)}"',
}


@pytest.mark.parametrize(("kind", "text"), PLANTED.items(), ids=PLANTED.keys())
def test_a_planted_secret_is_found(tmp_path: Path, kind: str, text: str) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "planted.py").write_text(f"# an ordinary file\n{text}\n")

    assert [leak.partition(": ")[2] for leak in scan(tmp_path)] == [kind]


def test_the_placeholder_and_references_are_not_secrets(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "POSTGRES_PASSWORD: change-me\n"
        "DATABASE_URL: postgresql://app:change-me@db:5432/app\n"
        "password: SecretStr\n"
        "PGPASSWORD: $DB_PASSWORD\n"
        "key = f'{namespace}:{key}'\n"
        "primary_key = result.inserted_primary_key\n"
        'cache_key = "orders-document-v2"\n'
    )

    assert scan(tmp_path) == []
