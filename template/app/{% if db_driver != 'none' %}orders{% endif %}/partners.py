"""The partner APIs behind an order quote (shipping, tax): their contracts, one bounded call each.

Shipping: POST {PARTNERS__SHIPPING_URL}/quote {"items": N, "weight_units": W}
          -> {"shipping_cents": int, "carrier": str}
Tax:      POST {PARTNERS__TAX_URL}/quote {"amount_cents": A} -> {"tax_cents": int}
"""

from time import perf_counter

import anyio
import httpx2
from fastapi import HTTPException
from pydantic import BaseModel, Field, ValidationError

from app.orders.partner_settings import PartnerSettings
from app.timing import current_stats


class ShippingQuote(BaseModel):
    shipping_cents: int = Field(ge=0)
    carrier: str = Field(min_length=1)


class TaxQuote(BaseModel):
    tax_cents: int = Field(ge=0)


class PartnerError(HTTPException):
    """A partner failed this request: 502 Bad Gateway (504 for a timeout), naming the partner."""

    def __init__(self, partner: str, detail: str, status_code: int = 502) -> None:
        super().__init__(status_code, f"The {partner} partner {detail}.")
        self.partner = partner


class PartnerTimeoutError(PartnerError):
    def __init__(self, partner: str, seconds: float) -> None:
        super().__init__(partner, f"did not answer within {seconds:g} s", 504)


MALFORMED = "sent an answer that is not a quote"


async def _ask(
    client: httpx2.AsyncClient,
    *,
    partner: str,
    url: str,
    question: dict[str, int],
    time_limit: float,
) -> bytes:
    """The body of the partner's 2xx answer to `question`, within `time_limit` seconds in all."""
    started = perf_counter()
    outcome = "error"
    try:
        # One deadline for the whole exchange: the client's own timeouts bound each step (connect,
        # each read), not their sum, so a partner that trickles bytes would outlast them.
        with anyio.fail_after(time_limit):
            response = await client.post(f"{url}/quote", json=question)
    except (TimeoutError, httpx2.TimeoutException) as error:
        outcome = "timeout"
        raise PartnerTimeoutError(partner, time_limit) from error
    except httpx2.HTTPError as error:
        # Refused, reset, or not HTTP: the partner is unreachable, which is not our client's fault.
        raise PartnerError(partner, f"could not be reached ({type(error).__name__})") from error
    else:
        outcome = "ok" if response.is_success else f"{response.status_code // 100}xx"
    finally:
        # The calls run concurrently in tasks that share the request's stats object.
        current_stats().partner_calls.append((partner, outcome, perf_counter() - started))
    if not response.is_success:
        raise PartnerError(partner, f"answered {response.status_code}")
    return response.content


async def quote_shipping(
    client: httpx2.AsyncClient, *, partners: PartnerSettings, items: int, weight_units: int
) -> ShippingQuote:
    """What shipping these items costs, and by which carrier."""
    answer = await _ask(
        client,
        partner="shipping",
        url=partners.shipping_url,
        question={"items": items, "weight_units": weight_units},
        time_limit=partners.shipping_timeout,
    )
    try:
        return ShippingQuote.model_validate_json(answer)
    except ValidationError as error:
        raise PartnerError("shipping", MALFORMED) from error


async def quote_tax(
    client: httpx2.AsyncClient, *, partners: PartnerSettings, amount_cents: int
) -> TaxQuote:
    """The tax due on this amount."""
    answer = await _ask(
        client,
        partner="tax",
        url=partners.tax_url,
        question={"amount_cents": amount_cents},
        time_limit=partners.tax_timeout,
    )
    try:
        return TaxQuote.model_validate_json(answer)
    except ValidationError as error:
        raise PartnerError("tax", MALFORMED) from error
