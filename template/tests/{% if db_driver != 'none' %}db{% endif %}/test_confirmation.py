"""The confirmation itself, against the real database: idempotent, and the sweep's window."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.db import open_database
from app.db_url import sqlalchemy_url
from app.orders import tasks
from app.orders.confirmation import confirm_order
from app.orders.models import Order
from app.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[tasks.Resources]:
    url = settings.database_url.get_secret_value()
    async with open_database(url, settings.db, 2) as (db, _ready):
        yield tasks.Resources(db=db)


async def insert_order(url: str, *, created_at: datetime, status: str = "pending") -> int:
    """An order of customer 3 written straight to the database: no API, so nothing enqueued.

    Customer 3, because test_orders writes orders for it too; its page tests read customer 2.
    """
    engine = create_async_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(
                insert(Order).values(customer_id=3, status=status, created_at=created_at)
            )
            assert result.inserted_primary_key is not None
            return int(result.inserted_primary_key[0])
    finally:
        await engine.dispose()


async def status_of(url: str, order_id: int) -> tuple[str, datetime | None]:
    engine = create_async_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    select(Order.status, Order.confirmed_at).where(Order.id == order_id)
                )
            ).one()
            return row.status, row.confirmed_at
    finally:
        await engine.dispose()


async def test_confirming_twice_changes_the_order_once(
    resources: tasks.Resources, migrated: str
) -> None:
    order_id = await insert_order(migrated, created_at=datetime.now(UTC))

    assert await tasks.confirm(resources, order_id=order_id) == "confirmed"
    status, confirmed_at = await status_of(migrated, order_id)
    assert await tasks.confirm(resources, order_id=order_id) == "unchanged"

    assert status == "confirmed"
    assert confirmed_at is not None
    # The second run did not touch the row: confirmed_at is the first run's.
    assert await status_of(migrated, order_id) == (status, confirmed_at)


async def test_a_cancelled_order_is_not_confirmed(
    resources: tasks.Resources, migrated: str
) -> None:
    order_id = await insert_order(migrated, created_at=datetime.now(UTC), status="cancelled")

    assert await confirm_order(resources.db, order_id=order_id) == "unchanged"
    assert await status_of(migrated, order_id) == ("cancelled", None)


async def test_an_order_that_is_not_there_is_retried(resources: tasks.Resources) -> None:
    assert await confirm_order(resources.db, order_id=987654) == "missing"
    with pytest.raises(tasks.OrderNotVisibleError):
        await tasks.confirm(resources, order_id=987654)
    assert isinstance(tasks.OrderNotVisibleError(), tasks.RETRYABLE)


async def test_the_sweep_confirms_only_orders_pending_inside_its_window(
    resources: tasks.Resources, migrated: str
) -> None:
    now = datetime.now(UTC)
    lost = await insert_order(migrated, created_at=now - timedelta(minutes=5))
    young = await insert_order(migrated, created_at=now)
    ancient = await insert_order(migrated, created_at=now - timedelta(days=3))

    confirmed = await tasks.sweep(resources, pending_for=60, lookback=86_400, limit=500)

    assert confirmed >= 1  # other tests' orders from this session may be in the window too
    assert (await status_of(migrated, lost))[0] == "confirmed"
    # Too young: its job may still be on its way. Too old: it needs a person, not a sweep.
    assert (await status_of(migrated, young))[0] == "pending"
    assert (await status_of(migrated, ancient))[0] == "pending"
    # A second sweep leaves what the first confirmed alone. (Not "confirms nothing": an order
    # another test left pending may cross the 60 s line between the two sweeps.)
    confirmed_first = await status_of(migrated, lost)
    await tasks.sweep(resources, pending_for=60, lookback=86_400, limit=500)
    assert await status_of(migrated, lost) == confirmed_first
