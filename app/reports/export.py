"""Decision logs out of Croupier: DSJson for Vowpal Wabbit, CSV and Parquet for analysts.

* `dsjson`: one Decision Service JSON event per *closed* decision (its reward is final), the
  format of Azure Personalizer's and the Decision Service's logs. `vw --cb_explore_adf --dsjson`
  reads it directly; the features are exactly those the service's contextual models learn from
  (app.bandits.vw_format), so a model trained offline on the export hashes them identically.
  Cost is -reward; `p` is the logged probability vector (chosen action first).
* `csv` / `parquet`: `app.reports.logs.decisions_frame` with the context (a JSON text column):
  every experimental decision, open ones included (`closed` false, `reward` empty).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import IO, Literal

import orjson
import pandas as pd
from sqlalchemy.orm import Session

from app.bandits import vw_format
from app.experiments.models import Experiment
from app.experiments.policy import action_features
from app.reports.logs import decisions_frame, probability_columns

Format = Literal["dsjson", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("dsjson", "csv", "parquet")
MEDIA_TYPES = {
    "dsjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


def log_frame(*, session: Session, experiment: Experiment, as_of: datetime | None) -> pd.DataFrame:
    return decisions_frame(session=session, experiment=experiment, as_of=as_of, with_context=True)


def dsjson_lines(experiment: Experiment, frame: pd.DataFrame) -> Iterator[bytes]:
    """One DSJson event (a JSON line, newline-terminated) per closed decision of `frame`."""
    actions = vw_format.action_namespaces(
        [v.key for v in experiment.variants],
        [action_features(v.payload) for v in experiment.variants],
    )
    closed = frame[frame["closed"]]
    vectors = closed[probability_columns(experiment)].to_numpy().tolist()
    rows = zip(
        closed["decision_id"].tolist(),
        closed["decided_at"].tolist(),
        closed["context"].tolist(),
        closed["arm"].tolist(),
        closed["reward"].tolist(),
        vectors,
        strict=True,
    )
    for decision_id, decided_at, context, arm, reward, probabilities in rows:
        event = vw_format.dsjson_event(
            event_id=str(decision_id),
            timestamp=decided_at.isoformat().replace("+00:00", "Z"),
            shared=vw_format.namespaces(context, vw_format.CONTEXT_NAMESPACE),
            actions=actions,
            arm=int(arm),
            probabilities=[float(p) for p in probabilities],
            reward=float(reward),
        )
        yield orjson.dumps(event) + b"\n"


def flat_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with `context` as JSON text (CSV and Parquet have no dict column type)."""
    out = frame.copy()
    out["context"] = [None if c is None else orjson.dumps(c).decode() for c in frame["context"]]
    return out


def write(
    *,
    session: Session,
    experiment: Experiment,
    fmt: Format,
    out: IO[bytes],
    as_of: datetime | None = None,
) -> int:
    """Write the export to `out`; returns the number of decisions written."""
    frame = log_frame(session=session, experiment=experiment, as_of=as_of)
    if fmt == "dsjson":
        count = 0
        for line in dsjson_lines(experiment, frame):
            out.write(line)
            count += 1
        return count
    flat = flat_frame(frame)
    if fmt == "csv":
        out.write(flat.to_csv(index=False).encode())
    else:
        flat.to_parquet(out, index=False)
    return len(flat)
