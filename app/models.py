"""Every table, imported in one place for Alembic's metadata."""

from app.alerts.models import Alert
from app.db import Base
from app.decisions.models import Decision
from app.experiments.models import Experiment, ExperimentRevision, Variant
from app.keys.models import ApiKey
from app.learning.models import PolicyVersion
from app.outcomes.models import Outcome
from app.reports.models import MetricRollup, RollupMark, TrafficRollup
from app.rollouts.models import Rollout
from app.webhooks.models import Webhook, WebhookDelivery

__all__ = [
    "Alert",
    "ApiKey",
    "Base",
    "Decision",
    "Experiment",
    "ExperimentRevision",
    "MetricRollup",
    "Outcome",
    "PolicyVersion",
    "Rollout",
    "RollupMark",
    "TrafficRollup",
    "Variant",
    "Webhook",
    "WebhookDelivery",
]
