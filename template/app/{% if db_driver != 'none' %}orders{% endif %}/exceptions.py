"""Errors of the orders domain, as HTTP problems."""

from fastapi import HTTPException


class OrderNotFoundError(HTTPException):
    def __init__(self, order_id: int) -> None:
        super().__init__(404, f"Order {order_id} does not exist.")


class CustomerNotFoundError(HTTPException):
    def __init__(self, customer_id: int) -> None:
        super().__init__(422, f"Customer {customer_id} does not exist.")
