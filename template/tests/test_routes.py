"""Every route the service serves sits on the app's own router, none behind an included router."""

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.health import PROBE_PATHS


def test_every_route_is_matched_on_the_apps_own_router(app: FastAPI) -> None:
    # app.include_router would put each router behind a node resolved on every request
    # (app.main.add_routes says what that costs); then no route would be here directly.
    direct = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    documented = {
        (path, method.upper())
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    probes = {(path, "GET") for path in PROBE_PATHS}

    assert probes <= direct
    assert documented <= direct
