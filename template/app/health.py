"""Probe endpoints: /livez says the process can serve; it touches nothing external."""

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


# Liveness must not depend on databases or caches: an outage there would make Kubernetes restart
# every healthy pod at once. Probes stay out of the OpenAPI schema; they are not part of the API.
@router.get("/livez", include_in_schema=False)
async def livez() -> Liveness:
    return Liveness()
