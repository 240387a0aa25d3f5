"""croupier_open_alerts{kind}: open alerts by kind, always set from the database.

`raise_alert` and the resolve functions flag their session; when that session commits (and
only then: a rolled-back alert never counts), the gauge is recomputed with one GROUP BY on a
fresh connection. `refresh_open_alerts` does the same on demand (at startup, say). Setting
absolute values read from the database, rather than adding deltas, keeps every process right
whoever raised the alert; with PROMETHEUS_MULTIPROC_DIR the most recent value wins.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.orm import Session

from app.alerts.models import Alert
from app.metrics import REGISTRY

log = logging.getLogger("croupier.alerts")

OPEN_ALERTS = Gauge(
    "croupier_open_alerts",
    "Alerts not yet resolved, by kind (psi_drift, reward_drift, srm, guardrail, rollout...).",
    ["kind"],
    registry=REGISTRY,
    multiprocess_mode="livemostrecent",
)
_CHANGED = "croupier_alerts_changed"
_known: set[str] = set()
_lock = threading.Lock()


def count_open(conn: Connection | Session) -> dict[str, int]:
    rows = conn.execute(
        select(Alert.kind, func.count()).where(Alert.resolved_at.is_(None)).group_by(Alert.kind)
    ).all()
    return {str(kind): int(n) for kind, n in rows}


def set_open(counts: dict[str, int]) -> None:
    with _lock:
        _known.update(counts)
        for kind in _known:
            OPEN_ALERTS.labels(kind).set(counts.get(kind, 0))


def refresh_open_alerts(bind: Engine | Session) -> dict[str, int]:
    """Recompute the gauge from the database; returns the counts."""
    if isinstance(bind, Session):
        counts = count_open(bind)
    else:
        with bind.connect() as conn:
            counts = count_open(conn)
    set_open(counts)
    return counts


def mark_changed(session: Session) -> None:
    """Recompute the gauge once `session` commits."""
    session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if not session.info.pop(_CHANGED, False):
        return
    try:
        bind: Any = session.get_bind()
        engine = bind.engine if isinstance(bind, Connection) else bind
        refresh_open_alerts(engine)
    except Exception:  # a metric must never fail the request that committed
        log.exception("could not refresh croupier_open_alerts")


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)
