"""Hostile or broken input gets a 4xx problem naming what is wrong: never a 500, never a hang."""

import httpx2
import pytest

from app.orders.schemas import MAX_ID, OrderDocument

pytestmark = pytest.mark.anyio

TOO_BIG = MAX_ID + 1
JSON = {"content-type": "application/json"}


def assert_problem(response: httpx2.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "path",
    [
        f"/orders/{TOO_BIG}",
        f"/orders/{TOO_BIG}/quote",
        f"/orders?after={TOO_BIG}",
        f"/orders?customer_id={TOO_BIG}",
        "/orders/" + "9" * 5000,
    ],
    ids=["order id", "quote id", "after", "customer_id", "5000 digits"],
)
async def test_ids_beyond_bigint_are_a_422(client: httpx2.AsyncClient, path: str) -> None:
    # The driver would refuse to send them (a 500 if they got that far).
    assert_problem(await client.get(path), 422)


def item(**overrides: object) -> dict[str, object]:
    return {"sku": "X-1", "quantity": 1, "unit_price_cents": 100, **overrides}


def order(*items: dict[str, object], customer_id: int = 3) -> dict[str, object]:
    # Customer 3: test_orders writes to it too; its page tests read customer 2.
    return {"customer_id": customer_id, "items": list(items) or [item()]}


@pytest.mark.parametrize(
    "body",
    [
        order(customer_id=TOO_BIG),
        order(item(quantity=True)),
        order(item(quantity="5")),
        order(item(quantity=5.0)),
        order(item(sku="A\u0000B")),
        order(*[item()] * 501),
    ],
    ids=["customer beyond bigint", "bool", "string", "float", "NUL", "501 items"],
)
async def test_values_the_schema_does_not_allow_are_a_422(
    client: httpx2.AsyncClient, body: dict[str, object]
) -> None:
    assert_problem(await client.post("/orders", json=body), 422)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"customer_id": 3,', 422),  # cut short: FastAPI's json_invalid
        (b"[" * 100_000 + b"]" * 100_000, 400),  # nested past the parser's recursion limit
        (b'{"customer_id": 3, "items": [{"sku": "\xff\xfe"}]}', 400),  # not UTF-8
        (b'{"customer_id": ' + b"9" * 5000 + b', "items": []}', 400),  # past int's digit limit
        (b'{"customer_id": 1e400, "items": []}', 422),  # infinity
    ],
    ids=["truncated", "deeply nested", "invalid UTF-8", "5000-digit number", "infinity"],
)
async def test_an_unreadable_body_is_a_4xx(
    client: httpx2.AsyncClient, body: bytes, status: int
) -> None:
    assert_problem(await client.post("/orders", content=body, headers=JSON), status)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_declared_json_is_a_422(
    client: httpx2.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/orders", content=b'{"customer_id": 3}', headers=headers)

    assert_problem(response, 422)


async def test_the_largest_values_allowed_round_trip(client: httpx2.AsyncClient) -> None:
    # 10,000 x 100,000,000 overflows a 32-bit integer: the database must sum in 64 bits.
    body = order(*[item(quantity=10_000, unit_price_cents=100_000_000)] * 3)

    created = await client.post("/orders", json=body)

    assert created.status_code == 201, created.text
    response = await client.get(f"/orders/{created.json()['id']}")
    assert response.status_code == 200, response.text
    assert OrderDocument.model_validate_json(response.content).total_cents == 3 * 10**12
