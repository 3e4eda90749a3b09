"""Orders, their customers and items.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types: a migration must not change when app code does later.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.UniqueConstraint("email", name="uq_customers_email"),
    )
    op.create_table(
        "orders",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "customer_id",
            Id,
            sa.ForeignKey("customers.id", name="fk_orders_customer_id"),
            nullable=False,
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("confirmed_at", Timestamp, nullable=True),
    )
    op.create_index("ix_orders_customer_id_id", "orders", ["customer_id", "id"])
    op.create_table(
        "order_items",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "order_id",
            Id,
            sa.ForeignKey("orders.id", name="fk_order_items_order_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_cents", sa.Integer(), nullable=False),
    )
    op.create_index("ix_order_items_order_id_id", "order_items", ["order_id", "id"])


def downgrade() -> None:
    op.drop_table("order_items")
    op.drop_table("orders")
    op.drop_table("customers")
