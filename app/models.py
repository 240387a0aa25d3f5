"""Every table, imported in one place for Alembic's metadata."""

from app.db import Base
from app.decisions.models import Decision
from app.experiments.models import Experiment, ExperimentRevision, Variant
from app.keys.models import ApiKey
from app.learning.models import PolicyVersion
from app.outcomes.models import Outcome
from app.reports.models import MetricRollup, RollupMark, TrafficRollup

__all__ = [
    "ApiKey",
    "Base",
    "Decision",
    "Experiment",
    "ExperimentRevision",
    "MetricRollup",
    "Outcome",
    "PolicyVersion",
    "RollupMark",
    "TrafficRollup",
    "Variant",
]
