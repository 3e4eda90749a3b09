"""The API's shapes: what requests may contain and what responses promise (OpenAPI)."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

OrderStatus = Literal["pending", "confirmed", "cancelled"]
# At most this many orders per page: a page is one indexed range scan, never a table scan.
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# Ids are BIGINT columns: a larger number can name no row, and the driver would refuse to send it
# (a 500 if it reached the database), so requests are refused with it at validation, as a 422.
MAX_ID = 2**63 - 1


class Customer(BaseModel):
    id: int
    name: str
    email: str


class Item(BaseModel):
    id: int
    sku: str
    quantity: int
    unit_price_cents: int


class OrderDocument(BaseModel):
    """GET /orders/{id}: the order with its customer and items, built by the database."""

    id: int
    status: OrderStatus
    created_at: datetime
    confirmed_at: datetime | None
    customer: Customer
    items: list[Item]
    total_cents: int


class OrderSummary(BaseModel):
    """One row of GET /orders: a narrow DTO, no items."""

    id: int
    customer_id: int
    status: OrderStatus
    created_at: datetime


class OrderPage(BaseModel):
    items: list[OrderSummary]
    # Pass it as `after` for the next page; null on the last page.
    next_after: int | None


class NewItem(BaseModel):
    # Strict: the schema says integer, so true, "5" and 5.0 are refused rather than coerced.
    model_config = ConfigDict(extra="forbid", strict=True)

    sku: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    quantity: Annotated[int, Field(ge=1, le=10_000)]
    unit_price_cents: Annotated[int, Field(ge=0, le=100_000_000)]


class NewOrder(BaseModel):
    """POST /orders: validated before anything touches the database."""

    model_config = ConfigDict(extra="forbid", strict=True)

    customer_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    items: Annotated[list[NewItem], Field(min_length=1, max_length=500)]


class CreatedOrder(BaseModel):
    id: int
    status: OrderStatus
    created_at: datetime
