"""The orders API against the real database: documents, keyset pages, creation, query budgets."""

from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx2
import pytest

from app.orders.schemas import OrderDocument, OrderPage

pytestmark = pytest.mark.anyio

Budget = Callable[[int], AbstractContextManager[list[int]]]


def expected_items(order_id: int, count: int = 5) -> list[dict[str, int | str]]:
    """What app.seed wrote for this order (its rule, restated)."""
    return [
        {
            "id": (order_id - 1) * count + j,
            "sku": f"SKU-{(order_id * 7 + j) % 10_000:05d}",
            "quantity": (order_id + j) % 5 + 1,
            "unit_price_cents": (order_id * 31 + j * 17) % 10_000 + 100,
        }
        for j in range(1, count + 1)
    ]


async def test_document_bytes_match_the_declared_model(client: httpx2.AsyncClient) -> None:
    response = await client.get("/orders/7")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    # The contract: bytes the database built validate against the route's response model.
    document = OrderDocument.model_validate_json(response.content)
    assert document.id == 7
    assert document.status == "pending"
    assert document.customer.model_dump() == {
        "id": 1,
        "name": "Customer 1",
        "email": "customer1@example.com",
    }
    assert [item.model_dump() for item in document.items] == expected_items(7)
    assert document.total_cents == sum(
        int(item["quantity"]) * int(item["unit_price_cents"]) for item in expected_items(7)
    )
    assert document.created_at.isoformat() == "2026-01-01T00:07:00+00:00"
    assert document.confirmed_at is None


async def test_the_document_is_one_query(
    client: httpx2.AsyncClient, assert_max_queries: Budget
) -> None:
    with assert_max_queries(1) as counts:
        await client.get("/orders/1")

    assert counts == [1]


async def test_the_budget_check_can_fail(
    client: httpx2.AsyncClient, assert_max_queries: Budget
) -> None:
    with (
        pytest.raises(AssertionError, match="ran 1 queries; the budget is 0"),
        assert_max_queries(0),
    ):
        await client.get("/orders/1")


async def test_the_openapi_schema_documents_the_document(client: httpx2.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    ok = schema["paths"]["/orders/{order_id}"]["get"]["responses"]["200"]

    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderDocument"
    }


async def test_an_unknown_order_is_a_404_problem(client: httpx2.AsyncClient) -> None:
    response = await client.get("/orders/999999")

    assert response.status_code == 404
    assert response.json()["detail"] == "Order 999999 does not exist."


@pytest.mark.parametrize("bad", ["0", "-1", "abc"])
async def test_a_malformed_id_is_a_422(client: httpx2.AsyncClient, bad: str) -> None:
    response = await client.get(f"/orders/{bad}")

    assert response.status_code == 422


async def test_keyset_pages_walk_a_customers_orders_once(
    client: httpx2.AsyncClient, assert_max_queries: Budget
) -> None:
    seen: list[int] = []
    after = 0
    with assert_max_queries(1):
        while True:
            response = await client.get(
                "/orders", params={"customer_id": 2, "limit": 4, "after": after}
            )
            page = OrderPage.model_validate_json(response.content)
            seen += [order.id for order in page.items]
            assert all(order.customer_id == 2 for order in page.items)
            if page.next_after is None:
                break
            after = page.next_after

    assert seen == list(range(2, 31, 3))


async def test_page_size_is_bounded(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/orders", params={"limit": 101})).status_code == 422
    assert (await client.get("/orders", params={"limit": 0})).status_code == 422
    page = (await client.get("/orders", params={"limit": 100})).json()
    assert len(page["items"]) <= 100
    assert set(page["items"][0]) == {"id", "customer_id", "status", "created_at"}


async def test_create_an_order_then_read_it(
    client: httpx2.AsyncClient, assert_max_queries: Budget
) -> None:
    body = {
        "customer_id": 3,
        "items": [
            {"sku": "BOOK-1", "quantity": 2, "unit_price_cents": 1250},
            {"sku": "PEN-9", "quantity": 1, "unit_price_cents": 199},
        ],
    }
    with assert_max_queries(2):
        created = await client.post("/orders", json=body)

    assert created.status_code == 201
    order_id = created.json()["id"]
    assert created.headers["location"] == f"/orders/{order_id}"
    assert created.json()["status"] == "pending"
    document = OrderDocument.model_validate_json((await client.get(f"/orders/{order_id}")).content)
    assert document.customer.id == 3
    assert [(i.sku, i.quantity, i.unit_price_cents) for i in document.items] == [
        ("BOOK-1", 2, 1250),
        ("PEN-9", 1, 199),
    ]
    assert document.total_cents == 2 * 1250 + 199


@pytest.mark.parametrize(
    "body",
    [
        {"customer_id": 3, "items": []},
        {"customer_id": 3, "items": [{"sku": "X", "quantity": 0, "unit_price_cents": 1}]},
        {"customer_id": 3, "items": [{"sku": "bad sku", "quantity": 1, "unit_price_cents": 1}]},
        {"customer_id": 3, "items": [{"sku": "X", "quantity": 1}]},
        {"customer_id": 3, "items": [{"sku": "X", "quantity": 1, "unit_price_cents": 1}], "x": 1},
        {"items": [{"sku": "X", "quantity": 1, "unit_price_cents": 1}]},
    ],
)
async def test_an_invalid_order_is_a_422_that_names_the_field(
    client: httpx2.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/orders", json=body)

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][0] == "body"


async def test_an_unknown_customer_is_a_422_and_writes_nothing(
    client: httpx2.AsyncClient,
) -> None:
    body = {"customer_id": 424242, "items": [{"sku": "X", "quantity": 1, "unit_price_cents": 1}]}
    before = (await client.get("/orders", params={"limit": 100, "after": 30})).json()["items"]

    response = await client.post("/orders", json=body)

    assert response.status_code == 422
    assert response.json()["detail"] == "Customer 424242 does not exist."
    after = (await client.get("/orders", params={"limit": 100, "after": 30})).json()["items"]
    assert after == before


async def test_a_body_that_is_not_json_is_rejected(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/orders", content=b"customer_id=1", headers={"content-type": "text/plain"}
    )

    assert response.status_code == 422
