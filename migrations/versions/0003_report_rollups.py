"""report rollups: hourly per-arm aggregates of closed decisions, kept by the learner

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollup_marks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("missing", sa.Float(), nullable=True),
        sa.Column("through_hour", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_rollup_marks_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollup_marks")),
        sa.UniqueConstraint(
            "experiment_id", "metric", name=op.f("uq_rollup_marks_experiment_id_metric")
        ),
    )
    op.create_table(
        "metric_rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("arm", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("sum_squares", sa.Float(), nullable=False),
        sa.Column("ips_total", sa.Float(), nullable=False),
        sa.Column("ips_sum_squares", sa.Float(), nullable=False),
        sa.Column("inverse_propensity", sa.Float(), nullable=False),
        sa.Column("inverse_propensity_squares", sa.Float(), nullable=False),
        sa.Column("minimum", sa.Float(), nullable=False),
        sa.Column("maximum", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_metric_rollups_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_rollups")),
        sa.UniqueConstraint(
            "experiment_id",
            "metric",
            "hour",
            "arm",
            name=op.f("uq_metric_rollups_experiment_id_metric_hour_arm"),
        ),
    )
    op.create_table(
        "traffic_rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("arm", sa.Integer(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_traffic_rollups_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_rollups")),
        sa.UniqueConstraint(
            "experiment_id",
            "hour",
            "arm",
            "policy_version",
            name=op.f("uq_traffic_rollups_experiment_id_hour_arm_policy_version"),
        ),
    )


def downgrade() -> None:
    op.drop_table("traffic_rollups")
    op.drop_table("metric_rollups")
    op.drop_table("rollup_marks")
