"""The migrations and the ORM models agree, and relationships refuse lazy loads (no N+1)."""

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from app.db_url import sqlalchemy_url
from app.orders.models import Base, Order


def test_models_match_the_migrated_schema(migrated: str) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async def compare() -> list[object]:
        engine = create_async_engine(sqlalchemy_url(migrated), poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(differences)
        finally:
            await engine.dispose()

    assert asyncio.run(compare()) == []


def test_an_unloaded_relationship_raises_instead_of_querying(migrated: str) -> None:
    async def touch_items() -> None:
        engine = create_async_engine(sqlalchemy_url(migrated), poolclass=NullPool)
        try:
            async with AsyncSession(engine) as session:
                order = await session.get(Order, 1)
                assert order is not None
                with pytest.raises(exc.InvalidRequestError, match="lazy='raise'"):
                    _ = order.items
        finally:
            await engine.dispose()

    asyncio.run(touch_items())
