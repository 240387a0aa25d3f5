"""Report latency and peak memory at 100k, 1M and 10M decisions, on PostgreSQL and SQLite.

    python -m benchmarks.report [--sizes 100000,1000000,10000000] [--backends sqlite,postgres]
                                [--quick] [--repeat 3] [--pg-admin-url URL]

For each backend and size:

1. A fresh database (SQLite: a file in a temporary directory; PostgreSQL: a database created
   for the run and dropped after it), migrated with Alembic (`app.migrate.upgrade`).
2. One experiment through the API (TestClient): 2 arms, fixed 50/50, reward window 60 s,
   started, then backdated to 7 days ago (its first policy version too).
3. N decisions bulk-loaded, spread uniformly over the 7 days (the last one more than a reward
   window before now), half of them (each with probability 1/2) with one outcome of the primary
   metric "reward" (value 1.0, received 1 s after the decision). PostgreSQL: `COPY` (foreign-key
   triggers off while loading, the rows are consistent by construction), then VACUUM ANALYZE.
   SQLite: `executemany` in 200k-row transactions with journal_mode=WAL, synchronous=OFF and
   foreign_keys=OFF on the loading connection only, then ANALYZE. All indexes of the schema
   stay in place while loading. One decision and its outcome are first written the app's way
   (the decide endpoint's writer statements; a Core insert of Outcome) at the same instant as
   the first bulk row; the raw stored columns of both are compared (so the bulk format is
   exactly what the app stores), then the probe is deleted.
4. In a fresh subprocess (so that its peak RSS is that of the report alone): `build_report`
   (as the endpoint calls it: a session, the experiment loaded by key, `as_of=None`), one
   warm-up and --repeat timed runs; then one run under tracemalloc. The baseline, in the same
   process: the learner's per-arm aggregate (`app.learning.service.aggregate`, the same
   correlated reward subquery) over every closed decision, warm-up + --repeat runs.
   Peak RSS growth = the kernel's peak RSS (VmHWM, reset through /proc/self/clear_refs just
   before the first report call) minus the RSS at that moment, read after the report runs.
   (Plain ru_maxrss is useless here: a child forked from the loader starts with the loader's
   peak.) The client process only: on PostgreSQL the work happens in the server's backends.

--quick: 100,000 decisions on both backends, 1 timed run. Results go to
benchmarks/results/report.json (--quick: report-quick.json); rows of other (backend, size)
pairs already in the file are kept, so sizes can be run separately (--repeat per run).
--repeat 0: no warm-up, one traced report run and one learner run (for 10M rows, where one
run takes minutes). --keep-pg: leave the PostgreSQL databases in place (for EXPLAIN); their
names are printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
KEY = "bench"
ARMS = ("control", "treatment")
DAYS = 7.0
REWARD_WINDOW_S = 60
CHUNK = 200_000
SEED = 2026
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_SECONDS = 3.0


@dataclass
class Row:
    backend: str
    decisions: int
    outcomes: int
    load_s: float
    analyze_s: float
    report_median_s: float
    report_max_s: float
    report_runs_s: list[float]
    learner_median_s: float
    learner_runs_s: list[float]
    repeat: int
    peak_rss_growth_mb: float
    peak_rss_mb: float
    tracemalloc_peak_mb: float
    rollup_s: float
    rolled_median_s: float
    rolled_runs_s: list[float]


# --------------------------------------------------------------------------- databases


def _sa_url(backend: str, where: str) -> str:
    return f"sqlite:///{where}" if backend == "sqlite" else f"postgresql+psycopg://{where}"


def _pg_conninfo(admin_url: str, dbname: str) -> str:
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{dbname}"


def _pg_admin(admin_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)


# --------------------------------------------------------------------------- experiment


def create_experiment(url: str) -> datetime:
    """The experiment through the API, started, then backdated DAYS days; returns the start."""
    from fastapi.testclient import TestClient
    from sqlalchemy import update

    from app.db import make_engine, make_session_factory, transaction, utcnow
    from app.experiments import service as experiments
    from app.learning.models import PolicyVersion
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(
        database_url=url,
        admin_key=ADMIN_KEY,
        learner_enabled=False,
        learner_safety_lag_s=0.0,
        sqlite_synchronous="NORMAL",
    )
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {
        "key": KEY,
        "name": "Report benchmark",
        "variants": [
            {"key": ARMS[0], "payload": {"model": "v1"}, "is_control": True},
            {"key": ARMS[1], "payload": {"model": "v2"}},
        ],
        "policy": {"type": "fixed"},
        "reward_window_s": REWARD_WINDOW_S,
        "primary_metric": "reward",
    }
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/experiments", json=body, headers=headers)
        assert response.status_code == 201, response.text
        response = client.post(f"/v1/experiments/{KEY}/start", headers=headers)
        assert response.status_code == 200, response.text
    started = (utcnow() - timedelta(days=DAYS)).replace(microsecond=0)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        experiment = experiments.get(session=session, key=KEY)
        experiment.started_at = started
        session.execute(
            update(PolicyVersion)
            .where(PolicyVersion.experiment_id == experiment.id, PolicyVersion.number == 1)
            .values(created_at=started)
        )
        state = session.scalar(
            PolicyVersion.__table__.select()
            .with_only_columns(PolicyVersion.state)
            .where(PolicyVersion.experiment_id == experiment.id)
        )
        assert state["probabilities"] == [0.5, 0.5], state
    engine.dispose()
    return started


def _ids(url: str) -> tuple[int, list[int]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        exp_id = conn.execute(text("SELECT id FROM experiments WHERE key = :k"), {"k": KEY})
        eid = int(exp_id.scalar_one())
        variants = conn.execute(
            text("SELECT id FROM variants WHERE experiment_id = :e ORDER BY position"), {"e": eid}
        )
        vids = [int(v) for (v,) in variants]
    engine.dispose()
    return eid, vids


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    decided_us: np.ndarray  # int64 microseconds since the epoch, sorted
    arm: np.ndarray
    outcome: np.ndarray  # bool


def make_data(n: int, start: datetime, end: datetime) -> Data:
    rng = np.random.default_rng(SEED)
    lo = int(start.timestamp() * 1e6) + 1_000_000
    hi = int(end.timestamp() * 1e6)
    decided = np.sort(rng.integers(lo, hi, size=n, dtype=np.int64))
    arm = rng.integers(0, 2, size=n, dtype=np.int64)
    outcome = rng.random(n) < 0.5
    outcome[0] = True  # the format probe compares row 0 and its outcome
    return Data(decided, arm, outcome)


def _times(us: np.ndarray) -> list[str]:
    """'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC), the format SQLAlchemy stores on SQLite."""
    text = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    return [s.replace("T", " ") for s in text.tolist()]


def _decision_id(i: int) -> str:
    return f"bench-{i:010d}"


PROBABILITIES = json.dumps(dict.fromkeys(ARMS, 0.5), separators=(",", ":"))  # as orjson writes


def write_probe(url: str, data: Data, eid: int, vids: list[int]) -> None:
    """Decision 0 and its outcome written the app's way, id 'probe-0', for the format check:
    the decision through the decide endpoint's group-commit writer statements
    (`app.decisions.writer`), the outcome through a Core insert of the Outcome model, as
    `app.outcomes.service` does."""
    from sqlalchemy import insert

    from app.db import make_engine, make_session_factory, transaction
    from app.decisions.writer import _Statements
    from app.outcomes.models import Outcome

    engine = make_engine(url)
    at = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(data.decided_us[0]))
    arm = int(data.arm[0])
    statements = _Statements(engine)
    row = {
        "id": "probe-0",
        "experiment_id": eid,
        "unit_id": "unit-0",
        "variant_id": vids[arm],
        "arm": arm,
        "propensity": 0.5,
        "probabilities": dict.fromkeys(ARMS, 0.5),
        "policy_version": 1,
        "context": None,
        "decided_at": at,
        "fallback": False,
        "experimental": True,
    }
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        statements.insert_many(cursor, [statements.params(row)])
        raw.commit()
    finally:
        raw.close()
    later = at + timedelta(seconds=1)
    with transaction(make_session_factory(engine)) as session:
        session.execute(
            insert(Outcome),
            [
                {
                    "decision_id": "probe-0",
                    "experiment_id": eid,
                    "metric": "reward",
                    "value": 1.0,
                    "occurred_at": later,
                    "received_at": later,
                    "late": False,
                    "dedup_key": "history",
                }
            ],
        )
    engine.dispose()


DECISION_COLUMNS = (
    "experiment_id, variant_id, arm, propensity, probabilities, policy_version, context, "
    "decided_at, fallback, experimental"
)
OUTCOME_COLUMNS = "experiment_id, metric, value, occurred_at, received_at, late, dedup_key"


def load_sqlite(path: Path, data: Data, eid: int, vids: list[int]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    n = len(data.arm)
    delay = 1_000_000
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        decided = _times(data.decided_us[lo:hi])
        received = _times(data.decided_us[lo:hi] + delay)
        arms = data.arm[lo:hi].tolist()
        has = data.outcome[lo:hi].tolist()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO decisions (id, unit_id, experiment_id, variant_id, arm, propensity, "
            "probabilities, policy_version, context, decided_at, fallback, experimental) "
            "VALUES (?, ?, ?, ?, ?, 0.5, ?, 1, NULL, ?, 0, 1)",
            (
                (_decision_id(i), f"unit-{i}", eid, vids[a], a, PROBABILITIES, t)
                for i, a, t in zip(range(lo, hi), arms, decided, strict=True)
            ),
        )
        conn.executemany(
            "INSERT INTO outcomes (decision_id, experiment_id, metric, value, occurred_at, "
            "received_at, late, dedup_key) VALUES (?, ?, 'reward', 1.0, ?, ?, 0, 'history')",
            (
                (_decision_id(i), eid, t, t)
                for i, h, t in zip(range(lo, hi), has, received, strict=True)
                if h
            ),
        )
        conn.execute("COMMIT")
    conn.close()


def load_postgres(conninfo: str, data: Data, eid: int, vids: list[int]) -> None:
    import psycopg

    n = len(data.arm)
    delay = 1_000_000
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers while loading
        conn.execute("SET synchronous_commit = off")
        with conn.cursor() as cur:
            with cur.copy(
                "COPY decisions (id, unit_id, experiment_id, variant_id, arm, propensity, "
                "probabilities, policy_version, context, decided_at, fallback, experimental) "
                "FROM STDIN"
            ) as copy:
                for lo in range(0, n, CHUNK):
                    hi = min(n, lo + CHUNK)
                    decided = _times(data.decided_us[lo:hi])
                    arms = data.arm[lo:hi].tolist()
                    copy.write(
                        "".join(
                            f"{_decision_id(i)}\tunit-{i}\t{eid}\t{vids[a]}\t{a}\t0.5\t"
                            f"{PROBABILITIES}\t1\t\\N\t{t}+00\tf\tt\n"
                            for i, a, t in zip(range(lo, hi), arms, decided, strict=True)
                        )
                    )
            with cur.copy(
                "COPY outcomes (decision_id, experiment_id, metric, value, occurred_at, "
                "received_at, late, dedup_key) FROM STDIN"
            ) as copy:
                for lo in range(0, n, CHUNK):
                    hi = min(n, lo + CHUNK)
                    received = _times(data.decided_us[lo:hi] + delay)
                    has = data.outcome[lo:hi].tolist()
                    copy.write(
                        "".join(
                            f"{_decision_id(i)}\t{eid}\treward\t1.0\t{t}+00\t{t}+00\tf\thistory\n"
                            for i, h, t in zip(range(lo, hi), has, received, strict=True)
                            if h
                        )
                    )
        conn.commit()


def check_and_drop_probe(backend: str, url: str, where: Any) -> None:
    """The ORM-written probe and bulk row 0 must be stored identically (raw columns)."""
    if backend == "sqlite":
        conn = sqlite3.connect(where, isolation_level=None)
        cast_d = [f"{c.strip()}, typeof({c.strip()})" for c in DECISION_COLUMNS.split(",")]
        cast_o = [f"{c.strip()}, typeof({c.strip()})" for c in OUTCOME_COLUMNS.split(",")]
    else:
        import psycopg

        conn = psycopg.connect(where, autocommit=True)
        cast_d = [f"{c.strip()}::text" for c in DECISION_COLUMNS.split(",")]
        cast_o = [f"{c.strip()}::text" for c in OUTCOME_COLUMNS.split(",")]
    rows = {}
    for did in ("probe-0", _decision_id(0)):
        d = conn.execute(f"SELECT {', '.join(cast_d)} FROM decisions WHERE id = '{did}'").fetchall()
        o = conn.execute(
            f"SELECT {', '.join(cast_o)} FROM outcomes WHERE decision_id = '{did}'"
        ).fetchall()
        rows[did] = (d, o)
    probe, bulk = rows["probe-0"], rows[_decision_id(0)]
    if probe != bulk or len(probe[0]) != 1 or len(probe[1]) != 1:
        raise SystemExit(f"bulk format differs from the ORM's:\n  orm:  {probe}\n  bulk: {bulk}")
    conn.execute("DELETE FROM outcomes WHERE decision_id = 'probe-0'")
    conn.execute("DELETE FROM decisions WHERE id = 'probe-0'")
    conn.close()


def analyze(backend: str, where: Any) -> None:
    if backend == "sqlite":
        conn = sqlite3.connect(where, isolation_level=None)
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(where, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")


# --------------------------------------------------------------------------- the child


def _reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; returns it in MB.

    ru_maxrss cannot be used on its own: a child forked from a big parent starts with the
    parent's peak (Linux keeps it across exec). Falls back to ru_maxrss off Linux."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss() -> float:
    try:
        return _status_mb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(field)


def child(url: str, repeat: int, single: bool = False) -> dict[str, Any]:
    """Runs in a fresh process: the report's latency and memory, then the learner baseline."""
    from app.db import make_engine, make_session_factory, utcnow
    from app.experiments import service as experiments
    from app.learning.service import aggregate
    from app.reports.service import build_report

    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with sessions() as session:  # connect and load the ORM before measuring
        experiments.get(session=session, key=KEY)

    def report() -> Any:
        with sessions() as session:
            experiment = experiments.get(session=session, key=KEY)
            return build_report(session=session, experiment=experiment, as_of=None)

    def learner() -> Any:
        with sessions() as session:
            experiment = experiments.get(session=session, key=KEY)
            through = utcnow() - timedelta(seconds=experiment.reward_window_s)
            return aggregate(session=session, experiment=experiment, after=None, through=through)

    gc.collect()
    rss_before = _reset_peak_rss()
    if single:  # one run, no warm-up, traced (for sizes where one run takes minutes)
        tracemalloc.start()
        runs = [_timed(report)[0]]
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = _peak_rss()
        learner_s, stats = _timed(learner)
        learner_runs = [learner_s]
    else:
        report()  # warm-up
        runs = [_timed(report)[0] for _ in range(repeat)]
        rss_after = _peak_rss()
        gc.collect()
        tracemalloc.start()
        report()
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stats = learner()  # warm-up
        learner_runs = [_timed(learner)[0] for _ in range(repeat)]
    rollup_s, rolled = _rolled(sessions, report, 1 if single else repeat)
    engine.dispose()
    return {
        "report_runs_s": runs,
        "rollup_s": rollup_s,
        "rolled_runs_s": rolled,
        "learner_runs_s": learner_runs,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "tracemalloc_peak_mb": traced_peak / 2**20,
        "closed_decisions": sum(s.count for s in stats),
    }


def _timed(call: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = call()
    return time.perf_counter() - t0, result


def _rolled(sessions: Any, report: Any, repeat: int) -> tuple[float, list[float]]:
    """What the service does: the learner rolls final hours up (once, then an hour at a time),
    and the report reads the rollups plus the recent raw rows. Returns (rollup s, report runs)."""
    from app.db import utcnow
    from app.learning.runner import roll_up_reports

    t0 = time.perf_counter()
    roll_up_reports(sessions=sessions, now=utcnow())
    rollup_s = time.perf_counter() - t0
    report()  # warm-up
    return rollup_s, [_timed(report)[0] for _ in range(max(repeat, 1))]


def run_child(url: str, repeat: int) -> dict[str, Any]:
    args = ["--child", url, "--repeat", str(max(repeat, 1))] + (["--single"] if repeat == 0 else [])
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- one case


def case(backend: str, n: int, repeat: int, admin_url: str, keep_pg: bool = False) -> Row:
    from app import migrate
    from app.db import utcnow

    tmp = Path(tempfile.mkdtemp(prefix="croupier-bench-"))
    dbname = f"croupier_bench_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        where: Any = tmp / "croupier.db"
        url = _sa_url("sqlite", str(where))
    else:
        _pg_admin(admin_url, f"CREATE DATABASE {dbname}")
        where = _pg_conninfo(admin_url, dbname)
        url = "postgresql+psycopg://" + where.split("://", 1)[1]
    try:
        migrate.upgrade(url)
        started = create_experiment(url)
        eid, vids = _ids(url)
        data = make_data(n, started, utcnow() - timedelta(seconds=2 * REWARD_WINDOW_S))
        write_probe(url, data, eid, vids)
        t0 = time.perf_counter()
        if backend == "sqlite":
            load_sqlite(where, data, eid, vids)
        else:
            load_postgres(where, data, eid, vids)
        load_s = time.perf_counter() - t0
        check_and_drop_probe(backend, url, where)
        t0 = time.perf_counter()
        analyze(backend, where)
        analyze_s = time.perf_counter() - t0
        outcomes = int(data.outcome.sum())
        del data
        gc.collect()
        print(
            f"  {backend} {n:,}: loaded in {load_s:.1f} s + analyze {analyze_s:.1f} s", flush=True
        )
        res = run_child(url, repeat)
        if res["closed_decisions"] != n:
            raise SystemExit(f"learner counted {res['closed_decisions']} of {n} decisions")
    finally:
        if backend == "postgres" and keep_pg:
            print(f"  kept PostgreSQL database {dbname}", flush=True)
        elif backend == "postgres":
            _pg_admin(admin_url, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        shutil.rmtree(tmp, ignore_errors=True)
    runs, lruns = res["report_runs_s"], res["learner_runs_s"]
    return Row(
        backend=backend,
        decisions=n,
        outcomes=outcomes,
        load_s=load_s,
        analyze_s=analyze_s,
        report_median_s=statistics.median(runs),
        report_max_s=max(runs),
        report_runs_s=runs,
        learner_median_s=statistics.median(lruns),
        learner_runs_s=lruns,
        repeat=repeat,
        peak_rss_growth_mb=res["rss_after_mb"] - res["rss_before_mb"],
        peak_rss_mb=res["rss_after_mb"],
        tracemalloc_peak_mb=res["tracemalloc_peak_mb"],
        rollup_s=res["rollup_s"],
        rolled_median_s=statistics.median(res["rolled_runs_s"]),
        rolled_runs_s=res["rolled_runs_s"],
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| backend | decisions | load s | report, no rollups: median s | max s "
        "| learner aggregate s | rollup build s (learner, once) | report as served s "
        "| peak RSS growth MB | tracemalloc peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.decisions:,} | {r.load_s:.1f} (+{r.analyze_s:.1f}) "
            f"| {r.report_median_s:.2f} | {r.report_max_s:.2f} | {r.learner_median_s:.2f} "
            f"| {r.rollup_s:.2f} | {r.rolled_median_s:.3f} "
            f"| {r.peak_rss_growth_mb:.1f} | {r.tracemalloc_peak_mb:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--out", default=None, help="JSON file (default: results/report.json)")
    parser.add_argument("--keep-pg", action="store_true")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeat, args.single)))
        return
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    backends = args.backends.split(",")
    rows = []
    for backend in backends:
        for n in sizes:
            rows.append(case(backend, n, repeat, args.pg_admin_url, args.keep_pg))
    print()
    print(table(rows))
    pg = [r for r in rows if r.backend == "postgres" and r.decisions >= 10_000_000]
    for r in pg:
        verdict = "meets" if r.rolled_median_s < TARGET_SECONDS else "misses"
        print(
            f"\nPostgreSQL {r.decisions:,} decisions: report as served (with the learner's "
            f"rollups) {r.rolled_median_s:.3f} s, {verdict} the {TARGET_SECONDS:.0f} s target; "
            f"without rollups {r.report_median_s:.2f} s"
        )
    RESULTS.mkdir(exist_ok=True)
    default = "report-quick.json" if args.quick else "report.json"
    out = Path(args.out) if args.out else RESULTS / default
    new = {(r.backend, r.decisions) for r in rows}
    kept = []
    if out.exists():
        kept = [
            r
            for r in json.loads(out.read_text()).get("rows", [])
            if (r["backend"], r["decisions"]) not in new
        ]
    merged = sorted(kept + [asdict(r) for r in rows], key=lambda r: (r["backend"], r["decisions"]))
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "sqlite": sqlite3.sqlite_version,
                },
                "rows": merged,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
