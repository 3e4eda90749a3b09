"""The "before" of the benchmark: GET /orders/{id} written the way a first FastAPI service is.

SQLAlchemy async ORM with relationships, the order's items fetched one query each (N+1), a
pydantic document validated from ORM attributes and returned through the std-json JSONResponse.
Each step is common in real services; together they are the "before" that the template fixes.

The only addition is measurement: a pure ASGI middleware counts the queries of each request
(SQLAlchemy engine events) and reports them in `Server-Timing: db;desc="N queries"`, as the
generated projects do, so the runner reads every variant the same way.

Run: DATABASE_URL=postgresql://... uvicorn --app-dir bench naive_app:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import BigInteger, ForeignKey, String, event, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The same pool as the generated projects and the limit app, so no variant waits on connections
# the others have.
POOL_SIZE = 20


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    orders: Mapped[list[Order]] = relationship(back_populates="customer")


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    customer: Mapped[Customer] = relationship(back_populates="orders")
    items: Mapped[list[OrderItem]] = relationship(back_populates="order", order_by="OrderItem.id")


class OrderItem(Base):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int]
    unit_price_cents: Mapped[int]
    order: Mapped[Order] = relationship(back_populates="items")


class CustomerOut(BaseModel):
    id: int
    name: str
    email: str


class OrderItemOut(BaseModel):
    id: int
    sku: str
    quantity: int
    unit_price_cents: int


class OrderDocument(BaseModel):
    id: int
    status: str
    created_at: datetime
    confirmed_at: datetime | None
    customer: CustomerOut
    items: list[OrderItemOut]
    total_cents: int


# A mutable counter per request: the engine event mutates it and never sets the ContextVar, so
# the count survives SQLAlchemy's hop into its greenlet.
_queries: ContextVar[list[int] | None] = ContextVar("queries", default=None)


def _count_query(*_: Any) -> None:
    counter = _queries.get()
    if counter is not None:
        counter[0] += 1


class QueryCountMiddleware:
    """Pure ASGI: adds `Server-Timing: db;desc="N queries"` when the response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counter = [0]

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                header = f'db;desc="{counter[0]} queries"'.encode()
                message["headers"] = [*message.get("headers", ()), (b"server-timing", header)]
            await send(message)

        token = _queries.set(counter)
        try:
            await self.app(scope, receive, send_counted)
        finally:
            _queries.reset(token)


def database_url() -> str:
    """DATABASE_URL as a plain postgresql:// URL, pointed at the asyncpg driver."""
    url = os.environ["DATABASE_URL"]
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    engine: AsyncEngine = create_async_engine(database_url(), pool_size=POOL_SIZE, max_overflow=0)
    event.listen(engine.sync_engine, "before_cursor_execute", _count_query)
    yield {"sessions": async_sessionmaker(engine, expire_on_commit=False)}
    await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.state.sessions
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

app = FastAPI(lifespan=lifespan)
app.add_middleware(QueryCountMiddleware)


@app.get("/orders/{order_id}")
async def get_order(order_id: int, session: SessionDep) -> JSONResponse:
    order = await session.get(Order, order_id)
    if order is None:
        raise HTTPException(status_code=404, detail="Order not found")
    customer = await session.get(Customer, order.customer_id)
    item_ids = await session.scalars(
        select(OrderItem.id).where(OrderItem.order_id == order.id).order_by(OrderItem.id)
    )
    # The N+1: one round trip per item, as a loop over ids (or a lazy relationship) does.
    items = [await session.get(OrderItem, item_id) for item_id in item_ids.all()]
    doc = OrderDocument.model_validate(
        {
            "id": order.id,
            "status": order.status,
            "created_at": order.created_at,
            "confirmed_at": order.confirmed_at,
            "customer": customer,
            "items": items,
            "total_cents": sum(item.quantity * item.unit_price_cents for item in items if item),
        },
        from_attributes=True,
    )
    return JSONResponse(doc.model_dump(mode="json"))
