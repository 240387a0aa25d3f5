"""The `contextual` policy (Vowpal Wabbit) next to Thompson sampling, and the learner's speed.

    python -m benchmarks.contextual [--duration 10] [--connections 32] [--repeat 5]
        [--backends sqlite] [--train 2000] [--examples 20000] [--json PATH] [--profile]

1. Decide latency. One server, served exactly as benchmarks.run serves it (uvicorn, one
   worker, the learner loop on), holds two running experiments with the same 10 variants
   (each with two action features in its payload): `ctx`, policy
   `{"type": "contextual", "exploration": {"algorithm": "squarecb"}}`, and `ts`, Thompson
   sampling. Both are trained first through the API (--train decisions each, batch decide,
   then outcomes from a rule where the best variant depends on the context) and one learner
   pass (app.learning.runner.run_pass, `now` past the reward window): the load starts only
   once every decide answer shows policy_version >= 2, so the contextual answers come from a
   trained VW model. `wrk` then loads the two in turn (ctx, ts, ctx, ts, ...; benchmarks.run's
   `load`, decide.lua's counting) with the same connections and duration; every request sends
   a new unit and one of 64 contexts of 20 features (10 numbers, 10 strings; 11 of them in
   the namespaces `user` and `page`). Each measure is the median of its --repeat runs (one
   run's p99 is noisy on a small machine: the range is shown too); every 200 answer is checked
   to be a stored row. After the load the same decide path runs in this process (no HTTP, no
   database) to show where a decision's CPU goes; --profile adds cProfile's top functions of
   the contextual decide handler and of the learn loop.
2. Learner throughput, pinned to one core: (a) the bare ContextualLearner.learn_raw loop over
   --examples logged decisions (10 actions x 20 features) and (b) a full learner pass,
   run_pass over --examples closed decisions (and their outcomes) inserted through the API
   into a fresh database.

The issue's targets: contextual p99 within 2x Thompson's, and >= 10,000 examples/s learned.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import string
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from app import migrate
from app.bandits import ContextualPolicy, sampled_choice
from app.db import make_engine, make_session_factory, utcnow
from app.decisions import cache, service
from app.decisions.schemas import DecideRequest
from app.learning import runner
from app.learning import service as learning_service
from benchmarks.run import (
    ADMIN_KEY,
    Result,
    drop_postgres,
    ensure_wrk,
    load,
    postgres_database,
    serve,
    stored_decisions,
)

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
N_ARMS = 10
FORMATS = ("banner", "video", "native")
VARIANTS: list[dict[str, Any]] = [
    {"key": f"v{i}", "payload": {"features": {"format": FORMATS[i % 3], "size": i + 1}}}
    for i in range(N_ARMS)
]
KEYS = [v["key"] for v in VARIANTS]
CONTEXTUAL: dict[str, Any] = {
    "type": "contextual",
    "exploration": {"algorithm": "squarecb"},
    "update_interval_s": 1,
}
THOMPSON: dict[str, Any] = {"type": "thompson", "update_interval_s": 1}
REWARD_WINDOW_S = 600.0
SAFETY_LAG_S = 5.0  # the server's CROUPIER_LEARNER_SAFETY_LAG_S (set explicitly below)
N_CONTEXTS = 64  # distinct contexts in the wrk script
BATCH = 1000  # decisions per batch request (~0.5 MB of body)
IN_PROCESS_CALLS = 3000

COUNTRIES = ("DE", "FR", "US", "GB", "ES", "IT", "NL", "PL", "SE", "BR", "JP", "IN")
SECTIONS = ("news", "sports", "tech", "travel", "food", "finance", "music", "cars")


def make_context(rng: random.Random) -> dict[str, Any]:
    """20 features: 10 numbers, 10 strings; 6 in `user`, 5 in `page`, 9 flat."""
    return {
        "user": {
            "country": rng.choice(COUNTRIES),
            "device": rng.choice(("mobile", "desktop", "tablet")),
            "age": rng.randint(18, 80),
            "tenure_days": rng.randint(0, 3000),
            "plan": rng.choice(("free", "plus", "pro")),
            "visits_7d": rng.randint(0, 40),
        },
        "page": {
            "section": rng.choice(SECTIONS),
            "position": rng.randint(1, 10),
            "referrer": rng.choice(("search", "social", "direct", "email")),
            "hour": rng.randint(0, 23),
            "weekday": rng.choice(("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
        },
        "recency_s": round(rng.expovariate(1 / 3600), 1),
        "price": round(rng.uniform(1, 200), 2),
        "discount": round(rng.random() * 0.5, 3),
        "browser": rng.choice(("firefox", "chrome", "safari", "edge")),
        "os": rng.choice(("linux", "windows", "macos", "android", "ios")),
        "cart_items": rng.randint(0, 12),
        "segment": rng.choice(string.ascii_lowercase[:6]),
        "language": rng.choice(("de", "en", "fr", "es")),
        "score": round(rng.gauss(0, 1), 4),
    }


def feature_count(context: dict[str, Any]) -> int:
    return sum(len(v) if isinstance(v, dict) else 1 for v in context.values())


def reward_probability(context: dict[str, Any], arm: int) -> float:
    """The synthetic truth: the best variant depends on device and section."""
    best = zlib.crc32(f"{context['user']['device']}/{context['page']['section']}".encode()) % N_ARMS
    return 0.5 if arm == best else 0.1


# --- set-up through the API ---------------------------------------------------------------
def create_started(url: str, key: str, policy: dict[str, Any]) -> None:
    body = {
        "key": key,
        "name": f"benchmark {key}",
        "variants": VARIANTS,
        "policy": policy,
        "reward_window_s": REWARD_WINDOW_S,
    }
    httpx.post(f"{url}/v1/experiments", json=body, headers=HEADERS).raise_for_status()
    httpx.post(f"{url}/v1/experiments/{key}/start", headers=HEADERS).raise_for_status()


def log_decisions(url: str, key: str, contexts: list[dict[str, Any]], rng: random.Random) -> int:
    """Decide for every context (batch API), then report the outcomes the synthetic truth
    draws (reward 1; no outcome is the default reward 0). Returns the outcomes sent."""
    decided: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, headers=HEADERS, timeout=120) as client:
        for lo in range(0, len(contexts), BATCH):
            items = [
                {"unit_id": f"{key}-{i}", "context": contexts[i]}
                for i in range(lo, min(lo + BATCH, len(contexts)))
            ]
            answer = client.post(f"/v1/experiments/{key}/decisions/batch", json={"items": items})
            answer.raise_for_status()
            decided += answer.json()["items"]
        outcomes = [
            {"decision_id": d["decision_id"], "value": 1.0}
            for d, context in zip(decided, contexts, strict=True)
            if rng.random() < reward_probability(context, KEYS.index(d["variant"]))
        ]
        for lo in range(0, len(outcomes), 5000):
            answer = client.post("/v1/outcomes/batch", json={"items": outcomes[lo : lo + 5000]})
            answer.raise_for_status()
    return len(outcomes)


def learner_pass(database_url: str) -> tuple[list[learning_service.PassResult], float]:
    """One run_pass with `now` just past the reward window of everything decided so far."""
    # A running service has these loaded before its learner's first pass (the report rollups
    # that end each pass import scipy's statistics: about a second, once).
    import app.reports.rollups
    import app.reports.service  # noqa: F401

    engine = make_engine(database_url)
    try:
        now = utcnow() + timedelta(seconds=REWARD_WINDOW_S + SAFETY_LAG_S + 1)
        start = time.perf_counter()
        results = runner.run_pass(
            sessions=make_session_factory(engine),
            safety_lag_s=SAFETY_LAG_S,
            learner="benchmark",
            now=now,
        )
        elapsed = time.perf_counter() - start
    finally:
        engine.dispose()
    failed = [r for r in results if r.error or r.version is None]
    if failed:
        raise RuntimeError(f"learner pass failed: {failed}")
    return results, elapsed


def wait_for_version(url: str, key: str, context: dict[str, Any]) -> int:
    """Decide until the server serves a learned version (its cache reloads within ~1 s)."""
    deadline = time.monotonic() + 20
    while True:
        answer = httpx.post(
            f"{url}/v1/experiments/{key}/decisions",
            json={"unit_id": "probe", "context": context},
            headers=HEADERS,
        )
        answer.raise_for_status()
        version = int(answer.json()["policy_version"])
        if version >= 2:
            return version
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key} still serves policy_version {version}")
        time.sleep(0.2)


LUA = string.Template(
    """-- Generated by benchmarks/contextual.py: decide.lua's setup, counting and report, with
-- each request carrying a new unit and one of $count contexts in turn.
dofile($decide)
local contexts = {
$contexts
}
local sent = 0
function request()
  sent = sent + 1
  local body = '{"unit_id":"t' .. id .. '-u' .. sent .. '","context":'
    .. contexts[sent % #contexts + 1] .. '}'
  return wrk.format(nil, nil, nil, body)
end
"""
)


def wrk_script(directory: Path, contexts: list[dict[str, Any]]) -> Path:
    path = directory / "decide_context.lua"
    rows = ",\n".join(f"  [==[{json.dumps(c, separators=(',', ':'))}]==]" for c in contexts)
    decide = json.dumps(str(Path(__file__).with_name("decide.lua")))
    path.write_text(LUA.substitute(count=len(contexts), decide=decide, contexts=rows))
    return path


# --- in-process timing ----------------------------------------------------------------------
def timed_us(call: Callable[[Any], object], inputs: list[Any]) -> dict[str, float]:
    """p50 / p99 / mean of one call per input, in microseconds."""
    for item in inputs[:100]:  # warm-up
        call(item)
    times = []
    clock = time.perf_counter_ns
    for item in inputs:
        start = clock()
        call(item)
        times.append((clock() - start) / 1000)
    times.sort()
    return {
        "p50_us": times[len(times) // 2],
        "p99_us": times[int(len(times) * 0.99)],
        "mean_us": statistics.fmean(times),
    }


def in_process(
    database_url: str, contexts: list[dict[str, Any]], *, profile: bool
) -> tuple[dict[str, Any], str | None]:
    """The decide handler's CPU per decision, without HTTP and the database write: parse,
    check, choose, build the row, serialise the answer; and the contextual choice's parts."""
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            served = {key: cache.load(session, key) for key in ("ctx", "ts")}
    finally:
        engine.dispose()
    bodies = [
        orjson.dumps({"unit_id": f"p{i}", "context": contexts[i % len(contexts)]})
        for i in range(IN_PROCESS_CALLS)
    ]

    def handler(key: str) -> Callable[[bytes], bytes]:
        experiment = served[key]
        assert experiment is not None

        def run(body: bytes) -> bytes:
            item = DecideRequest.model_validate_json(body)
            service.check_items([item], max_features=256, batch=False)
            row = service.decision_row(experiment, item, now=utcnow())
            return orjson.dumps(service.response(experiment, row))

        return run

    def choose(key: str) -> Callable[[dict[str, Any]], object]:
        experiment = served[key]
        assert experiment is not None
        assert experiment.state is not None
        state, policy = experiment.state, experiment.policy
        return lambda c: policy.choose(state, salt="s", unit_id="u", decision_id="d", context=c)

    result: dict[str, Any] = {}
    for key in ("ctx", "ts"):
        result[key] = {
            "handler": timed_us(handler(key), bodies),
            "choose": timed_us(
                choose(key), [contexts[i % len(contexts)] for i in range(IN_PROCESS_CALLS)]
            ),
        }
    policy = served["ctx"].policy  # type: ignore[union-attr]
    assert isinstance(policy, ContextualPolicy)
    assert policy._pool is not None
    if policy.fingerprint() != bench_policy().fingerprint():
        raise RuntimeError("the learner benchmark's policy differs from the served one")
    pool = policy._pool
    many = [contexts[i % len(contexts)] for i in range(IN_PROCESS_CALLS)]
    lines = [policy.lines(c) for c in many]
    pmfs = [pool.predict(x) for x in lines[: len(contexts)]]
    result["ctx"]["parts"] = {
        "vw_text": timed_us(policy.lines, many),
        "vw_predict": timed_us(pool.predict, lines),
        "floor_and_draw": timed_us(
            lambda pmf: sampled_choice(
                policy.floored(pmf).tolist(), n_arms=N_ARMS, salt="s", decision_id="d"
            ),
            [pmfs[i % len(pmfs)] for i in range(IN_PROCESS_CALLS)],
        ),
    }
    return result, profiled(handler("ctx"), bodies) if profile else None


def profiled(call: Callable[[Any], object], inputs: list[Any]) -> str:
    """cProfile's top 15 functions by own time over one call per input."""
    profiler = cProfile.Profile()
    profiler.enable()
    for item in inputs:
        call(item)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    return out.getvalue().strip()


# --- learner throughput ----------------------------------------------------------------------
@contextmanager
def one_core() -> Iterator[int]:
    """Pin this process to one CPU (the learner is single-threaded; so is VW's learn)."""
    before = os.sched_getaffinity(0)
    core = min(before)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, before)


def bench_policy() -> ContextualPolicy:
    """The contextual experiment's policy as the service builds it (checked by fingerprint)."""
    return ContextualPolicy(
        n_arms=N_ARMS,
        exploration=CONTEXTUAL["exploration"],
        actions=KEYS,
        action_features=[v["payload"]["features"] for v in VARIANTS],
    )


def learn_loop(examples: int, seed: int, *, profile: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    logged = []
    for _ in range(examples):
        context = make_context(rng)
        arm = rng.randrange(N_ARMS)
        reward = 1.0 if rng.random() < reward_probability(context, arm) else 0.0
        logged.append((context, arm, reward, 1.0 / N_ARMS))
    policy = bench_policy()
    learner = policy.learner()
    try:
        # What the learner does (app/learning/contextual.py): learn each decision, keep VW's
        # pre-update pmf, floor them all at once at the end.
        start = time.perf_counter()
        raw = [learner.learn_raw(c, arm, reward, p) for c, arm, reward, p in logged]
        policy.floored_rows(raw)
        elapsed = time.perf_counter() - start
    finally:
        learner.close()
    report = None
    if profile:
        learner = policy.learner()
        try:
            report = profiled(lambda x: learner.learn_raw(*x), logged[: min(examples, 5000)])
        finally:
            learner.close()
    start = time.perf_counter()
    for context, arm, reward, propensity in logged:
        policy.lines(context, (arm, -reward, propensity))
    text_s = time.perf_counter() - start
    return {
        "examples": examples,
        "seconds": elapsed,
        "examples_per_s": examples / elapsed,
        "vw_text_share": text_s / elapsed,
        "profile": report,
    }


def bench_pass(backend: str, examples: int, seed: int) -> dict[str, Any]:
    """run_pass over `examples` closed decisions logged through the API into a new database."""
    database_url, cleanup = new_database(backend)
    try:
        migrate.upgrade(database_url)
        env = {
            "CROUPIER_DATABASE_URL": database_url,
            "CROUPIER_ADMIN_KEY": ADMIN_KEY,
            "CROUPIER_LEARNER_ENABLED": "false",  # this process runs the pass being timed
        }
        process, url = serve(["app.main:create_app", "--factory"], env)
        rng = random.Random(seed)
        try:
            create_started(url, "learn", CONTEXTUAL)
            contexts = [make_context(rng) for _ in range(examples)]
            start = time.perf_counter()
            outcomes = log_decisions(url, "learn", contexts, rng)
            ingest_s = time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(30)
        with one_core():
            results, elapsed = learner_pass(database_url)
        (result,) = results
        if result.decisions_counted != examples:
            raise RuntimeError(f"the pass counted {result.decisions_counted}, not {examples}")
        return {
            "examples": examples,
            "outcomes": outcomes,
            "seconds": elapsed,
            "examples_per_s": examples / elapsed,
            "version": result.version,
            "ingest_seconds": ingest_s,
        }
    finally:
        cleanup()


# --- decide latency --------------------------------------------------------------------------
def new_database(backend: str) -> tuple[str, Callable[[], None]]:
    if backend == "sqlite":
        tmp = tempfile.mkdtemp()
        return f"sqlite:///{tmp}/bench.db", lambda: shutil.rmtree(tmp)
    if backend == "postgres":
        url = postgres_database()
        if url is None:
            raise LookupError(backend)
        return url, lambda: drop_postgres(url)
    raise SystemExit(f"unknown backend {backend!r} (sqlite or postgres)")


def bench_decide(wrk: str, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    database_url, cleanup = new_database(backend)
    rng = random.Random(args.seed)
    contexts = [make_context(rng) for _ in range(N_CONTEXTS)]
    if any(feature_count(c) != 20 for c in contexts):
        raise RuntimeError("every context must have 20 features")
    tmp = Path(tempfile.mkdtemp())
    try:
        migrate.upgrade(database_url)
        env = {
            "CROUPIER_DATABASE_URL": database_url,
            "CROUPIER_ADMIN_KEY": ADMIN_KEY,
            "CROUPIER_LEARNER_SAFETY_LAG_S": str(SAFETY_LAG_S),
        }
        process, url = serve(["app.main:create_app", "--factory"], env)
        runs: dict[str, list[Result]] = {"ctx": [], "ts": []}
        try:
            start = time.perf_counter()
            training = [make_context(rng) for _ in range(args.train)]
            for key, policy in (("ctx", CONTEXTUAL), ("ts", THOMPSON)):
                create_started(url, key, policy)
                log_decisions(url, key, training, random.Random(args.seed + 1))
            results, pass_s = learner_pass(database_url)
            versions = {key: wait_for_version(url, key, contexts[0]) for key in runs}
            print(
                f"{backend}: trained {args.train} decisions each in "
                f"{time.perf_counter() - start:.1f}s (pass {pass_s:.2f}s: "
                f"{', '.join(f'{r.experiment} v{r.version}' for r in results)}); "
                f"serving {versions}",
                flush=True,
            )
            script = wrk_script(tmp, contexts)
            for _ in range(args.repeat):
                for key, name in (("ctx", "contextual"), ("ts", "thompson")):
                    result = load(
                        wrk,
                        url,
                        duration=args.duration,
                        connections=args.connections,
                        name=name,
                        key=key,
                        script=script,
                    )
                    runs[key].append(result)
                    print(
                        f"{backend}: {name} {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
                        f"p99 {result.p99_ms:.1f} ms",
                        flush=True,
                    )
        finally:
            process.terminate()
            process.wait(30)
        answered = sum(r.answered_total for rs in runs.values() for r in rs)
        stored = stored_decisions(database_url)
        expected = answered + 2 * args.train
        ctx, ts = medians(runs["ctx"]), medians(runs["ts"])
        inproc, profile = in_process(database_url, contexts, profile=args.profile)
        return {
            "contextual": ctx,
            "thompson": ts,
            "p99_ratio": ctx["p99_ms"] / ts["p99_ms"],
            "p99_ratio_per_pair": [
                c.p99_ms / t.p99_ms for c, t in zip(runs["ctx"], runs["ts"], strict=True)
            ],
            "p50_ratio": ctx["p50_ms"] / ts["p50_ms"],
            "rps_ratio": ctx["rps"] / ts["rps"],
            "policy_version": {"contextual": versions["ctx"], "thompson": versions["ts"]},
            "all_200s_stored": stored >= expected,
            "stored": stored,
            "expected_at_least": expected,
            "runs": {key: [asdict(r) for r in rs] for key, rs in runs.items()},
            "in_process": inproc,
            "profile": profile,
        }
    finally:
        shutil.rmtree(tmp)
        cleanup()


def medians(results: list[Result]) -> dict[str, Any]:
    """Each measure's median over the runs (p99 of one run is noisy: the range comes along)."""
    return {
        "rps": statistics.median(r.rps for r in results),
        "p50_ms": statistics.median(r.p50_ms for r in results),
        "p99_ms": statistics.median(r.p99_ms for r in results),
        "p99_ms_range": [min(r.p99_ms for r in results), max(r.p99_ms for r in results)],
        "non_200": sum(r.non_200 for r in results),
        "requests": sum(r.requests for r in results),
    }


# --- report ---------------------------------------------------------------------------------
def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\n10 variants, 20-feature contexts, {args.connections} connections, medians of "
        f"{args.repeat} runs of {args.duration}s each, {os.cpu_count()} cores, wrk and server "
        "on the same machine\n"
    )
    print(
        "| backend | policy | version | req/s | p50 ms | p99 ms (min-max) | non-200 | 200s stored |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for backend, row in report["decide"].items():
        stored = "yes" if row["all_200s_stored"] else "NO"
        for name in ("contextual", "thompson"):
            r = row[name]
            low, high = r["p99_ms_range"]
            print(
                f"| {backend} | {name} | {row['policy_version'][name]} | {r['rps']:,.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} ({low:.1f}-{high:.1f}) | "
                f"{r['non_200']} | {stored} |"
            )
    print()
    for backend, row in report["decide"].items():
        met = "met" if row["p99_ratio"] <= 2.0 else "NOT met"
        pairs = ", ".join(f"{x:.2f}" for x in row["p99_ratio_per_pair"])
        print(
            f"{backend}: contextual / thompson p99 = {row['p99_ratio']:.2f}x (target <= 2x: "
            f"{met}; run by run: {pairs}); p50 {row['p50_ratio']:.2f}x; "
            f"throughput {row['rps_ratio']:.2f}x"
        )
    first = next(iter(report["decide"].values()), None)
    if first is not None:
        ip = first["in_process"]
        print(
            f"\nIn process, no HTTP and no database write, {IN_PROCESS_CALLS} decisions "
            "(µs p50 / p99):\n"
        )
        print("| step | contextual | thompson |")
        print("|---|---|---|")

        def cell(t: dict[str, float]) -> str:
            return f"{t['p50_us']:.0f} / {t['p99_us']:.0f}"

        print(
            "| decide handler (parse, check, choose, row, answer) | "
            f"{cell(ip['ctx']['handler'])} | {cell(ip['ts']['handler'])} |"
        )
        print(f"| policy.choose | {cell(ip['ctx']['choose'])} | {cell(ip['ts']['choose'])} |")
        parts = ip["ctx"]["parts"]
        print(f"| contextual: VW text lines | {cell(parts['vw_text'])} | - |")
        print(f"| contextual: VW predict (pool) | {cell(parts['vw_predict'])} | - |")
        print(f"| contextual: floor + draw | {cell(parts['floor_and_draw'])} | - |")
        if first["profile"]:
            print("\ncProfile of the contextual decide handler (in process):\n")
            print(first["profile"])
    print(f"\nLearner, one core, {N_ARMS} actions x 20 features:\n")
    print("| learner | examples | seconds | examples/s | target >= 10,000/s |")
    print("|---|---|---|---|---|")
    rows = [("ContextualLearner.learn_raw loop", report["learner"]["loop"])]
    rows += [(f"run_pass ({b}, closed decisions)", r) for b, r in report["learner"]["pass"].items()]
    for name, r in rows:
        met = "met" if r["examples_per_s"] >= 10_000 else "NOT met"
        print(
            f"| {name} | {r['examples']:,} | {r['seconds']:.2f} | {r['examples_per_s']:,.0f} "
            f"| {met} |"
        )
    share = report["learner"]["loop"]["vw_text_share"]
    print(f"\n(VW text building is {share:.0%} of the learn loop's time.)")
    if report["learner"]["loop"]["profile"]:
        print("\ncProfile of the learn loop:\n")
        print(report["learner"]["loop"]["profile"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; medians shown")
    parser.add_argument("--backends", default="sqlite", help="sqlite, postgres or both")
    parser.add_argument("--train", type=int, default=2000, help="decisions before the load")
    parser.add_argument("--examples", type=int, default=20_000, help="learner examples")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--profile", action="store_true", help="cProfile the decide handler")
    args = parser.parse_args()
    wrk = ensure_wrk()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    report: dict[str, Any] = {"settings": vars(args) | {"json": str(args.json)}, "decide": {}}
    for backend in backends:
        try:
            report["decide"][backend] = bench_decide(wrk, backend, args)
        except LookupError:
            continue  # PostgreSQL unavailable (said so already)
    with one_core() as core:
        print(f"learner loop on core {core}...", flush=True)
        loop = learn_loop(args.examples, args.seed, profile=args.profile)
    passes = {}
    for backend in backends:
        try:
            passes[backend] = bench_pass(backend, args.examples, args.seed)
        except LookupError:
            continue
    report["learner"] = {"loop": loop, "pass": passes}
    report["settings"]["cores"] = os.cpu_count()
    print_report(report, args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
