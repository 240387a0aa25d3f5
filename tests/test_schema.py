"""The schema: created by migrations only, identical to the models, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from app import migrate
from app.models import Base


def test_migrations_produce_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert migrate.is_at_head(engine)


def test_decide_and_aggregation_paths_are_indexed(engine: Engine) -> None:
    inspector = inspect(engine)
    decision_indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("decisions")}
    assert ("experiment_id", "decided_at") in decision_indexes
    outcome_uniques = {
        tuple(u["column_names"]) for u in inspector.get_unique_constraints("outcomes")
    }
    assert ("decision_id", "metric", "dedup_key") in outcome_uniques
    assert inspector.get_pk_constraint("decisions")["constrained_columns"] == ["id"]
