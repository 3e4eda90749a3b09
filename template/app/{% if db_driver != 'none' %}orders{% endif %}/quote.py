"""Order quotes: the order's subtotal plus shipping and tax, asked of both partners at once."""

import logging
from typing import TypedDict

import anyio
import httpx2
from pydantic import BaseModel

from app.orders import partners as partner_api
from app.orders.partner_settings import PartnerSettings

log = logging.getLogger(__name__)


class OrderQuote(BaseModel):
    """GET /orders/{id}/quote: what the order costs, shipped and taxed."""

    order_id: int
    subtotal_cents: int
    shipping_cents: int
    tax_cents: int
    total_cents: int
    carrier: str


class Quote(TypedDict):
    order_id: int
    subtotal_cents: int
    shipping_cents: int
    tax_cents: int
    total_cents: int
    carrier: str


class _Item(BaseModel):
    quantity: int


class _Order(BaseModel):
    """The few fields of the order document a quote needs (validating all of it costs more)."""

    items: list[_Item]
    total_cents: int


async def quote_order(
    client: httpx2.AsyncClient, *, order_id: int, document: bytes, partners: PartnerSettings
) -> Quote:
    """The quote of the order whose document (JSON bytes, as the database built it) is given.

    Shipping and tax are asked at once, so a quote costs the slower call, not the sum of both.
    Either partner failing fails the quote (504 when it timed out, 502 otherwise, naming it), and
    the other call is cancelled at once: a price without its shipping or tax would be a wrong
    price, so there is no partial answer, and no reason to keep waiting for the other partner.
    """
    order = _Order.model_validate_json(document)
    shipping: list[partner_api.ShippingQuote] = []
    tax: list[partner_api.TaxQuote] = []

    async def ask_shipping() -> None:
        weight_units = sum(item.quantity for item in order.items)
        shipping.append(
            await partner_api.quote_shipping(
                client, partners=partners, items=len(order.items), weight_units=weight_units
            )
        )

    async def ask_tax() -> None:
        tax.append(
            await partner_api.quote_tax(client, partners=partners, amount_cents=order.total_cents)
        )

    # The failure itself (or, were a child's error a group of its own, that group).
    failure: Exception | None = None
    try:
        # AnyIO's task group, not asyncio.TaskGroup: on Python 3.11 and 3.12 a failing child
        # leaves asyncio.TaskGroup's parent task marked as cancelling, and an enclosing AnyIO
        # cancel scope (Starlette's, the server's) then lets its CancelledError escape.
        async with anyio.create_task_group() as calls:
            calls.start_soon(ask_shipping)
            calls.start_soon(ask_tax)
    except* partner_api.PartnerError as failed:
        # The first failure answers; the problem handler turns it into problem+json.
        failure = failed.exceptions[0]
    if failure is not None:
        log.warning(
            "quote failed",
            extra={"order_id": order_id, "error": str(failure), "cause": repr(failure.__cause__)},
        )
        # Raised here, not inside `except*`: Python 3.11.0 to 3.11.3 (Debian 12's is 3.11.2)
        # wrap an exception raised there in an ExceptionGroup, which no handler matches: a 500.
        raise failure from None
    [shipped], [taxed] = shipping, tax
    return {
        "order_id": order_id,
        "subtotal_cents": order.total_cents,
        "shipping_cents": shipped.shipping_cents,
        "tax_cents": taxed.tax_cents,
        "total_cents": order.total_cents + shipped.shipping_cents + taxed.tax_cents,
        "carrier": shipped.carrier,
    }
