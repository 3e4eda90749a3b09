"""Probe endpoints: /livez touches nothing external; /readyz runs the registered checks."""

from fastapi import APIRouter
from starlette.responses import Response

from app.deps import ReadinessChecksDep, SettingsDep
from app.readiness import Readiness, check_readiness
from app.responses import JSONBytesResponse

router = APIRouter(tags=["health"])

# The answer never changes, so it is encoded once; probes run every few seconds on every pod.
_LIVE = b'{"status":"ok"}'
LIVEZ, READYZ = "/livez", "/readyz"
# Answered whatever the load: admission control never refuses them (app.admission).
PROBE_PATHS = (LIVEZ, READYZ)


# Liveness must not depend on databases or caches: an outage there would make Kubernetes restart
# every healthy pod at once. Probes stay out of the OpenAPI schema; they are not part of the API.
@router.get(LIVEZ, include_in_schema=False)
async def livez() -> Response:
    return JSONBytesResponse(_LIVE)


@router.get(READYZ, include_in_schema=False, response_model=Readiness)
async def readyz(checks: ReadinessChecksDep, settings: SettingsDep) -> Response:
    readiness = await check_readiness(checks, seconds_each=settings.readiness_timeout)
    status_code = 503 if readiness.status == "unready" else 200
    # Probes only read the status code; the body tells a human which dependency is down.
    return JSONBytesResponse(readiness.model_dump(mode="json"), status_code=status_code)
