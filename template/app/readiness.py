"""The readiness registry: each dependency the lifespan opens registers a tightly timed check."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Literal

from pydantic import BaseModel

CheckStatus = Literal["ok", "failed", "timeout"]


@dataclass(frozen=True)
class ReadinessCheck:
    """A named probe of one dependency. `required=False` means degraded, not unready, when down
    (a fail-open cache: requests still succeed without it)."""

    name: str
    probe: Callable[[], Awaitable[object]]
    required: bool = True


class CheckResult(BaseModel):
    status: CheckStatus
    required: bool
    duration_ms: float
    error: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unready"]
    checks: dict[str, CheckResult]


async def _run(check: ReadinessCheck, seconds: float) -> CheckResult:
    started = perf_counter()
    status: CheckStatus = "ok"
    error = None
    try:
        async with asyncio.timeout(seconds):
            await check.probe()
    except TimeoutError:
        status, error = "timeout", f"no answer within {seconds} s"
    except Exception as exc:  # a probe reports any failure; it must never fail /readyz itself
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    duration_ms = round((perf_counter() - started) * 1000, 1)
    return CheckResult(status=status, required=check.required, duration_ms=duration_ms, error=error)


async def check_readiness(checks: Sequence[ReadinessCheck], *, seconds_each: float) -> Readiness:
    """Run every check concurrently, each cut at `seconds_each`: /readyz costs the slowest one."""
    results = await asyncio.gather(*(_run(check, seconds_each) for check in checks))
    failed = [result for result in results if result.status != "ok"]
    if any(result.required for result in failed):
        status: Literal["ready", "degraded", "unready"] = "unready"
    else:
        status = "degraded" if failed else "ready"
    return Readiness(
        status=status, checks={c.name: r for c, r in zip(checks, results, strict=True)}
    )
