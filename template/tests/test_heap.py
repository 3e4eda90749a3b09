"""Once started, a service freezes what start-up left alive out of the collector's full passes,
and collects its youngest generation less often."""

import gc

import pytest
from asgi_lifespan import LifespanManager

from app.heap import YOUNG_GENERATION_THRESHOLD
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.anyio


def collectable(target: object) -> bool:
    """Whether a full collection would walk `target` (gc.get_objects leaves frozen objects out)."""
    return any(candidate is target for candidate in gc.get_objects())


async def test_a_started_service_freezes_its_startup_objects(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"environment": "development"}))
    assert collectable(app.router)
    threshold = gc.get_threshold()
    assert threshold[0] != YOUNG_GENERATION_THRESHOLD
    try:
        async with LifespanManager(app):
            # The app, its routes and what the lifespan opened are out of the full passes.
            assert not collectable(app.router)
            # What requests create later is collected as before.
            assert collectable(object.__new__(type("Later", (), {})))
            assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def test_tests_freeze_nothing(settings: Settings) -> None:
    # Every test starts an app: frozen each time, the garbage of the tests before would stay.
    before, threshold = gc.get_freeze_count(), gc.get_threshold()
    async with LifespanManager(create_app(settings)):
        assert gc.get_freeze_count() == before
        assert gc.get_threshold() == threshold
