"""GET /orders/{id}/quote against real partner servers: concurrent, bounded, all or nothing."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio
import fastapi.encoders
import fastapi.routing
import httpx2
import pytest
from pydantic import ValidationError

from app.orders.partner_settings import PartnerSettings
from app.orders.quote import OrderQuote
from app.orders.schemas import OrderDocument
from app.settings import Settings, describe_error
from tests.db.fixtures import ONE_CONNECTION
from tests.db.partner_servers import PartnerServer, Received

pytestmark = pytest.mark.anyio

# A guard against hangs, not a speed assertion: every wait below ends long before it.
HANG_GUARD_SECONDS = 10
Partners = dict[str, PartnerServer]
Budget = Callable[[int], AbstractContextManager[list[int]]]


def shipping_answer(question: dict[str, Any]) -> dict[str, Any]:
    return {"shipping_cents": 300 + 25 * question["weight_units"], "carrier": "Test Post"}


def tax_answer(question: dict[str, Any]) -> dict[str, Any]:
    return {"tax_cents": question["amount_cents"] * 8 // 100}


@pytest.fixture
async def partners() -> AsyncIterator[Partners]:
    journal: list[str] = []
    servers = {
        "shipping": PartnerServer("shipping", shipping_answer, journal),
        "tax": PartnerServer("tax", tax_answer, journal),
    }
    async with anyio.create_task_group() as running:
        for server in servers.values():
            await server.start(running)
        yield servers
        running.cancel_scope.cancel()


@pytest.fixture
def partner_timeouts() -> dict[str, float]:
    # Generous: only a broken implementation (a sequential one, at the barrier) waits them out.
    return {"shipping": 5.0, "tax": 5.0}


@pytest.fixture
def pool() -> dict[str, float]:
    # Changes to the usual pool (DB__ settings); a test that needs another parametrizes this.
    return {}


@pytest.fixture
def settings(
    settings: Settings,
    partners: Partners,
    partner_timeouts: dict[str, float],
    pool: dict[str, float],
) -> Settings:
    """The usual test settings, with the partners on their loopback ports."""
    return settings.model_copy(
        update={
            "db": settings.db.model_copy(update=pool),
            # The client's own read timeout lies beyond the hang guard: only the partners'
            # deadlines can end a slow call in time.
            "http": settings.http.model_copy(update={"read_timeout": 60.0}),
            "partners": PartnerSettings(
                shipping_url=partners["shipping"].url,
                tax_url=partners["tax"].url,
                shipping_timeout=partner_timeouts["shipping"],
                tax_timeout=partner_timeouts["tax"],
            ),
        }
    )


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_a_quote_adds_shipping_and_tax_to_the_subtotal(
    client: httpx2.AsyncClient, partners: Partners, assert_max_queries: Budget
) -> None:
    order = OrderDocument.model_validate_json((await client.get("/orders/7")).content)
    weight = sum(item.quantity for item in order.items)

    with assert_max_queries(1):
        response = await client.get("/orders/7/quote")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    shipping, tax = 300 + 25 * weight, order.total_cents * 8 // 100
    assert response.json() == {
        "order_id": 7,
        "subtotal_cents": order.total_cents,
        "shipping_cents": shipping,
        "tax_cents": tax,
        "total_cents": order.total_cents + shipping + tax,
        "carrier": "Test Post",
    }
    assert partners["shipping"].received == [
        Received("POST", "/quote", {"items": len(order.items), "weight_units": weight})
    ]
    assert partners["tax"].received == [
        Received("POST", "/quote", {"amount_cents": order.total_cents})
    ]


async def test_both_partners_are_asked_at_once(
    client: httpx2.AsyncClient, partners: Partners
) -> None:
    # Each partner answers only once the other has been asked. Asked one after the other, the
    # first would wait for the second until its timeout, and the quote would be a 504.
    partners["shipping"].until = partners["tax"].arrived
    partners["tax"].until = partners["shipping"].arrived

    with anyio.fail_after(HANG_GUARD_SECONDS):
        response = await client.get("/orders/7/quote")

    assert response.status_code == 200, response.text
    journal = partners["tax"].journal
    assert sorted(journal[:2]) == ["shipping arrived", "tax arrived"]
    assert sorted(journal[2:]) == ["shipping answered", "tax answered"]


@pytest.mark.parametrize(
    ("slow", "partner_timeouts"),
    [("shipping", {"shipping": 0.2, "tax": 5.0}), ("tax", {"shipping": 5.0, "tax": 0.2})],
    ids=["shipping", "tax"],
)
async def test_a_partner_slower_than_its_timeout_is_a_504_naming_it(
    client: httpx2.AsyncClient, partners: Partners, slow: str
) -> None:
    partners[slow].until = anyio.Event()  # never set: this partner would never answer

    with anyio.fail_after(HANG_GUARD_SECONDS):
        response = await client.get("/orders/7/quote")
        # The service gave up on the call and closed its connection (on a loaded machine the
        # deadline can pass before the request is sent, or before the connection is made).
        await partners[slow].all_connections_closed()

    body = assert_problem(response, 504)
    assert body["detail"] == f"The {slow} partner did not answer within 0.2 s."


@pytest.mark.parametrize("partner_timeouts", [{"shipping": 5.0, "tax": 0.001}], ids=["1 ms"])
async def test_a_deadline_that_passes_before_the_request_is_sent_is_a_504_too(
    client: httpx2.AsyncClient, partners: Partners
) -> None:
    # What a loaded machine does to a short deadline: it can pass between connect and send.
    partners["tax"].until = anyio.Event()

    with anyio.fail_after(HANG_GUARD_SECONDS):
        response = await client.get("/orders/7/quote")
        # Whatever the service had opened by then, it closed.
        await partners["tax"].all_connections_closed()

    body = assert_problem(response, 504)
    assert body["detail"] == "The tax partner did not answer within 0.001 s."


async def answers_500(partner: PartnerServer) -> None:
    partner.status = 500


async def answers_garbage(partner: PartnerServer) -> None:
    partner.body = b"<html>Bad gateway</html>"


async def answers_something_else(partner: PartnerServer) -> None:
    partner.body = b'{"price": 12}'


async def is_not_listening(partner: PartnerServer) -> None:
    await partner.stop_listening()


FAILURES: dict[str, tuple[Callable[[PartnerServer], Awaitable[None]], str]] = {
    "500": (answers_500, "answered 500"),
    "garbage": (answers_garbage, "sent an answer that is not a quote"),
    "wrong shape": (answers_something_else, "sent an answer that is not a quote"),
    "closed port": (is_not_listening, "could not be reached (ConnectError)"),
}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("partner", ["shipping", "tax"])
async def test_a_failing_partner_is_a_502_naming_it(
    client: httpx2.AsyncClient, partners: Partners, partner: str, failure: str
) -> None:
    make_it_fail, detail = FAILURES[failure]
    await make_it_fail(partners[partner])

    with anyio.fail_after(HANG_GUARD_SECONDS):
        response = await client.get("/orders/7/quote")

    body = assert_problem(response, 502)
    assert body["detail"] == f"The {partner} partner {detail}."


@pytest.mark.parametrize(
    ("failing", "other", "partner_timeouts"),
    # The other partner's deadline lies beyond the hang guard: only cancellation ends its call.
    [
        ("shipping", "tax", {"shipping": 5.0, "tax": 60.0}),
        ("tax", "shipping", {"shipping": 60.0, "tax": 5.0}),
    ],
    ids=["shipping", "tax"],
)
async def test_a_failure_cancels_the_other_call(
    client: httpx2.AsyncClient, partners: Partners, failing: str, other: str
) -> None:
    # The failing partner answers 500 once the other one has been asked, which never answers.
    partners[failing].until = partners[other].arrived
    partners[failing].status = 500
    partners[other].until = anyio.Event()

    with anyio.fail_after(HANG_GUARD_SECONDS):
        response = await client.get("/orders/7/quote")
        await partners[other].abandoned.wait()

    body = assert_problem(response, 502)
    assert body["detail"] == f"The {failing} partner answered 500."


async def test_an_unknown_order_is_a_404_and_no_partner_is_asked(
    client: httpx2.AsyncClient, partners: Partners
) -> None:
    body = assert_problem(await client.get("/orders/999999/quote"), 404)

    assert body["detail"] == "Order 999999 does not exist."
    assert partners["shipping"].received == partners["tax"].received == []


async def test_a_malformed_id_is_a_422(client: httpx2.AsyncClient) -> None:
    assert_problem(await client.get("/orders/0/quote"), 422)


@pytest.mark.parametrize("pool", [ONE_CONNECTION], ids=["one connection"])
async def test_no_database_connection_is_held_while_the_partners_answer(
    client: httpx2.AsyncClient, partners: Partners
) -> None:
    release = anyio.Event()
    partners["tax"].until = release
    quotes: list[httpx2.Response] = []

    async def quote() -> None:
        quotes.append(await client.get("/orders/7/quote"))

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as requests:
            requests.start_soon(quote)
            await partners["tax"].arrived.wait()
            # The quote waits on the tax partner now; the pool's one connection must be free.
            order = await client.get("/orders/1")
            release.set()

    assert order.status_code == 200, order.text
    assert [response.status_code for response in quotes] == [200]


async def test_the_quote_skips_jsonable_encoder(
    client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []

    def recording(obj: object, *args: object, **kwargs: object) -> object:
        calls.append(obj)
        return obj

    monkeypatch.setattr(fastapi.routing, "jsonable_encoder", recording)
    monkeypatch.setattr(fastapi.encoders, "jsonable_encoder", recording)

    assert (await client.get("/orders/7/quote")).status_code == 200
    assert calls == []


async def test_the_openapi_schema_documents_the_quote_and_its_failures(
    client: httpx2.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"]["/orders/{order_id}/quote"]["get"]["responses"]

    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderQuote"
    }
    assert {"404", "422", "502", "504"} <= set(responses)
    assert OrderQuote.model_json_schema()["required"] == [
        "order_id",
        "subtotal_cents",
        "shipping_cents",
        "tax_cents",
        "total_cents",
        "carrier",
    ]


def test_partner_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERS__SHIPPING_URL", "https://shipping.example.com/v2/")
    monkeypatch.setenv("PARTNERS__TAX_TIMEOUT", "0.25")

    partners = Settings().partners

    # The trailing slash goes: calls append "/quote".
    assert partners.shipping_url == "https://shipping.example.com/v2"
    assert partners.tax_timeout == 0.25


def test_bad_partner_settings_name_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNERS__TAX_URL", "tax.example.com")  # no scheme
    monkeypatch.setenv("PARTNERS__SHIPPING_TIMEOUT", "0")

    with pytest.raises(ValidationError) as caught:
        Settings()
    message = describe_error(caught.value)

    assert "PARTNERS__TAX_URL" in message
    assert "PARTNERS__SHIPPING_TIMEOUT" in message
