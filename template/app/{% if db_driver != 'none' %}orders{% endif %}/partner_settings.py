"""Where the partner APIs behind an order quote live, and how long each call may take."""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field


def _without_trailing_slash(url: str) -> str:
    return url.rstrip("/")


# An http(s) base URL; a trailing slash is dropped, since calls append "/quote" to it.
BaseUrl = Annotated[str, Field(pattern=r"^https?://\S+$"), AfterValidator(_without_trailing_slash)]


class PartnerSettings(BaseModel):
    """The shipping and tax APIs GET /orders/{id}/quote asks, each call with its own deadline.

    A deadline covers the whole call (connect, send, answer). The shared client's HTTP__*
    timeouts bound each step only, and allow seconds per step; these bound the request. Both
    partners are asked at once, so a quote waits for the slower deadline at most.
    """

    # Local stubs by default; deployments set the partners' real base URLs.
    shipping_url: BaseUrl = "http://127.0.0.1:8081"
    tax_url: BaseUrl = "http://127.0.0.1:8082"
    # Carrier rate lookups are the slower partner; 0.8 s keeps a checkout page's quote under a
    # second, and a rate that takes longer is one the customer would not wait for anyway.
    shipping_timeout: float = Field(default=0.8, gt=0)
    # A tax answer is a rate-table lookup at the partner: slower than 0.3 s means it is in
    # trouble, and waiting longer only holds this request (and its client) hostage.
    tax_timeout: float = Field(default=0.3, gt=0)
