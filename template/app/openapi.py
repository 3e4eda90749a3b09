"""The OpenAPI document, with every error response documented as the problem+json it really is.

FastAPI documents errors as application/json and its own 422 shape; this service answers every
error with `app.errors.problem`. So the document is FastAPI's, rewritten once: each operation's
4xx/5xx responses point at the Problem schema under application/problem+json, and each gets the
errors any request may meet (400 unreadable body, 413 body too large, 500, 503 with Retry-After).
Clients, generated SDKs and the schema-conformance fuzzing in the template's tests rely on it.
"""

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.errors import PROBLEM_JSON, Problem

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# What any operation may answer, whatever its parameters.
_ALWAYS = {
    500: "The server failed; the body says no more than that (the log has the traceback).",
    503: "Overloaded or a dependency is down: retry after the Retry-After header's seconds.",
}
# What an operation with a request body may answer besides.
_WITH_BODY = {
    400: "The body could not be read as JSON (malformed, not UTF-8, nested too deep).",
    413: "The body is larger than the service accepts (MAX_BODY_BYTES).",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _problem_response(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
    }
    if status == 503:
        response["headers"] = _RETRY_AFTER
    return response


def _document_problems(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    extra = {**_ALWAYS, **(_WITH_BODY if "requestBody" in operation else {})}
    for status, description in extra.items():
        responses.setdefault(str(status), {"description": description})
    for code, response in responses.items():
        if code[0] in "45":
            default = HTTPStatus(int(code)).phrase
            responses[code] = _problem_response(int(code), response.get("description", default))


def openapi_with_problems(app: FastAPI) -> dict[str, Any]:
    """`app.openapi`: FastAPI's document with problem+json errors, built once and kept."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, routes=app.routes, description=app.description
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        # FastAPI's own 422 shapes: no response has them (422 is a Problem with `errors`).
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        for path_item in document["paths"].values():
            for operation in path_item.values():
                _document_problems(operation)
        app.openapi_schema = document
    return app.openapi_schema
