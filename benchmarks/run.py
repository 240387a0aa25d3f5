"""Decide-endpoint throughput and latency next to a bare FastAPI endpoint, same settings.

    python -m benchmarks.run [--duration 10] [--connections 32] [--backends sqlite,postgres]

Both servers run as `uvicorn --workers 1 --http httptools --loop uvloop --no-access-log` and are
loaded by `wrk` (2 threads) on the same machine, one after the other, in one run. The decide
endpoint serves a 3-arm Thompson-sampling experiment with a context, logging every exposure
with group commit; after each run the benchmark checks that every 200 answer is a stored row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import migrate

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
PG_ADMIN_URL = os.environ.get(
    "CROUPIER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
UVICORN = [
    "--workers",
    "1",
    "--http",
    "httptools",
    "--loop",
    "uvloop",
    "--no-access-log",
    "--log-level",
    "warning",
]


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_200: int
    answered_total: int  # 200 answers, warm-up included: each must be a stored row


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL
        )
        found = shutil.which("wrk")
    if not found:
        sys.exit("the benchmark needs wrk (Debian: apt-get install wrk)")
    return found


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(target: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *target, "--port", str(port), *UVICORN],
        cwd=ROOT,
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/docs", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server {target} did not start")


def load(
    wrk: str,
    url: str,
    *,
    duration: int,
    connections: int,
    name: str,
    key: str = "bench",
    script: Path | None = None,
) -> Result:
    """Load experiment `key`'s decide endpoint with `script` (default: decide.lua)."""
    endpoint = f"{url}/v1/experiments/{key}/decisions"
    script_path = str(script or Path(__file__).with_name("decide.lua"))
    # Warm up: connection pools, the policy cache, the database's pages.
    warmup = _wrk(wrk, endpoint, script_path, seconds=2, connections=connections)
    values = _wrk(wrk, endpoint, script_path, seconds=duration, connections=connections)
    requests = values["REQUESTS"]
    return Result(
        name=name,
        rps=requests / (values["DURATION_US"] / 1e6),
        p50_ms=values["P50_US"] / 1000,
        p99_ms=values["P99_US"] / 1000,
        requests=requests,
        non_200=values["NON200"],
        answered_total=warmup["REQUESTS"] - warmup["NON200"] + requests - values["NON200"],
    )


def _wrk(wrk: str, endpoint: str, script: str, *, seconds: int, connections: int) -> dict[str, int]:
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script, endpoint, "--", ADMIN_KEY],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    keys = ("NON200", "P50_US", "P99_US", "REQUESTS", "DURATION_US")
    return {
        parts[0]: int(parts[1])
        for parts in map(str.split, out.splitlines())
        if len(parts) == 2 and parts[0] in keys
    }


def create_experiment(url: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {
        "key": "bench",
        "name": "benchmark",
        "variants": [{"key": "a", "payload": {"model": "v1"}}, {"key": "b"}, {"key": "c"}],
        "policy": {"type": "thompson", "min_probability": 0.05},
        "reward_window_s": 600,
    }
    httpx.post(f"{url}/v1/experiments", json=body, headers=headers).raise_for_status()
    httpx.post(f"{url}/v1/experiments/bench/start", headers=headers).raise_for_status()


def stored_decisions(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM decisions")).scalar_one())
    finally:
        engine.dispose()


def median_result(results: list[Result]) -> Result:
    """The run with the median throughput (its latencies come with it)."""
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


def bench_backend(
    wrk: str, backend: str, database_url: str, args: argparse.Namespace
) -> tuple[Result, Result, int, int]:
    """Both servers up at once, loaded in turn (decide, bare, decide, bare, ...), so slow
    drifts of the machine touch both alike; the medians are reported."""
    migrate.upgrade(database_url)
    env = {"CROUPIER_DATABASE_URL": database_url, "CROUPIER_ADMIN_KEY": ADMIN_KEY}
    process, url = serve(["app.main:create_app", "--factory"], env)
    bare_process, bare_url = serve(["benchmarks.bare_app:app"], {})
    decide_runs: list[Result] = []
    bare_runs: list[Result] = []
    try:
        create_experiment(url)
        for _ in range(args.repeat):
            decide_runs.append(
                load(
                    wrk,
                    url,
                    duration=args.duration,
                    connections=args.connections,
                    name=f"decide ({backend})",
                )
            )
            bare_runs.append(
                load(
                    wrk,
                    bare_url,
                    duration=args.duration,
                    connections=args.connections,
                    name="bare FastAPI",
                )
            )
    finally:
        for p in (process, bare_process):
            p.terminate()
            p.wait(30)
    for d, b in zip(decide_runs, bare_runs, strict=True):
        print(f"{backend}: decide {d.rps:,.0f} req/s, bare {b.rps:,.0f} req/s", flush=True)
    answered = sum(r.answered_total for r in decide_runs)
    return (
        median_result(decide_runs),
        median_result(bare_runs),
        stored_decisions(database_url),
        answered,
    )


def postgres_database() -> str | None:
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"croupier_bench_{uuid.uuid4().hex[:8]}"
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:
        print(f"PostgreSQL at {PG_ADMIN_URL} unavailable ({type(exc).__name__}); skipped")
        return None
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres(url: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians shown")
    args = parser.parse_args()
    wrk = ensure_wrk()
    rows = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            tmp = tempfile.mkdtemp()
            url = f"sqlite:///{tmp}/bench.db"
            rows.append((backend, *bench_backend(wrk, backend, url, args)))
            shutil.rmtree(tmp)
        elif backend == "postgres":
            pg_url = postgres_database()
            if pg_url is not None:
                try:
                    rows.append((backend, *bench_backend(wrk, backend, pg_url, args)))
                finally:
                    drop_postgres(pg_url)
    print(
        f"\n{args.connections} connections, median of {args.repeat} runs of {args.duration}s "
        f"each, {os.cpu_count()} cores, wrk and servers on the same machine\n"
    )
    print(
        "| backend | decide req/s | bare req/s | ratio | decide p50 / p99 ms "
        "| bare p50 / p99 ms | non-200 | 200s stored |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for backend, croupier, bare, stored, answered in rows:
        print(
            f"| {backend} | {croupier.rps:,.0f} | {bare.rps:,.0f} | "
            f"{croupier.rps / bare.rps:.2f} | {croupier.p50_ms:.1f} / {croupier.p99_ms:.1f} | "
            f"{bare.p50_ms:.1f} / {bare.p99_ms:.1f} | {croupier.non_200} | "
            f"{'yes' if stored >= answered else f'NO ({stored} < {answered})'} |"
        )


if __name__ == "__main__":
    main()
