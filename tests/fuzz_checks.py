"""Schemathesis checks of the template's own, loaded by tests/test_fuzz.py (SCHEMATHESIS_HOOKS).

No error body carries internals: a traceback, a source path, the text of a driver's or
SQLAlchemy's exception (which quotes the SQL and its parameters). Schemathesis's own checks see
that an error is a documented Problem; a Problem whose detail is an exception's text would pass
them.
"""

import re
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response

# Shapes that only an exception's text has; a fuzzer's random strings do not produce them.
INTERNALS = re.compile(
    r"Traceback \(most recent call last\)"
    r"|File \"/"
    r"|site-packages"
    r"|\b(?:sqlalchemy|asyncpg|psycopg|asyncmy|aiosqlite|pydantic_core|starlette|fastapi)\.\w"
    r"|\[SQL: "
    r"|Background on this error"
)


def internals_in(body: str) -> list[str]:
    """What in an error body reads as internals, if anything."""
    return [match.group(0) for match in INTERNALS.finditer(body)]


@schemathesis.check
def no_internals_in_errors(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    if response.status_code >= 400:
        found = internals_in(response.text)
        if found:
            raise AssertionError(f"an error body carries internals: {found[:3]}")
    return None
