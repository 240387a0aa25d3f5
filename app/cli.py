"""`croupier serve|migrate|keys|learn|report|export|evaluate|simulate|replay`: the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import migrate
from app.db import make_engine, make_session_factory, transaction
from app.keys import service as keys_service
from app.settings import Settings, get_settings

T = TypeVar("T")


def _sessions(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    return engine, make_session_factory(engine)


def bootstrap_admin_key(settings: Settings) -> str | None:
    """First start: no key stored and none configured -> create an admin key and return it.
    (Once keys exist, even all revoked, none is made: `croupier keys create` is the way.)"""
    if settings.admin_key is not None:
        return None
    engine, sessions = _sessions(settings)
    try:
        with transaction(sessions) as session:
            if keys_service.any_stored(session=session):
                return None
            _, full = keys_service.create(session=session, name="bootstrap-admin", scopes=["admin"])
            return full
    finally:
        engine.dispose()


def seed_demo_data(settings: Settings) -> list[str]:
    from app.demo import seed_demo

    engine, sessions = _sessions(settings)
    try:
        return seed_demo(sessions)
    finally:
        engine.dispose()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    migrate.upgrade(settings.database_url)
    key = bootstrap_admin_key(settings)
    if settings.demo:
        seeded = seed_demo_data(settings)
        if seeded:
            print(
                f"Empty database: created the demo experiments {', '.join(seeded)} with "
                "simulated traffic (CROUPIER_DEMO=false starts empty).",
                flush=True,
            )
    host = args.host or settings.host
    port = args.port or settings.port
    if key is not None:
        print(
            "\nCreated an admin API key. It is shown once (only its hash is stored):\n\n"
            f"    {key}\n\n"
            "Try it:\n\n"
            f'    curl -H "Authorization: Bearer {key}" http://{host}:{port}/v1/experiments\n\n'
            "Create more with `croupier keys create --name NAME --scope decide`.\n",
            flush=True,
        )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=args.workers or settings.workers,
        log_level=settings.log_level,
    )
    return 0


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    migrate.upgrade(settings.database_url)
    print(f"database at migration {migrate.head_revision()}")
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    engine, sessions = _sessions(settings)
    try:
        with transaction(sessions) as session:
            if args.keys_command == "create":
                row, full = keys_service.create(
                    session=session, name=args.name, scopes=sorted(set(args.scope))
                )
                print(full)
                print(
                    f"created key {row.name!r} (prefix {row.prefix}, scopes "
                    f"{','.join(row.scopes)}); it is shown once",
                    file=sys.stderr,
                )
            elif args.keys_command == "list":
                for row in keys_service.list_keys(session=session):
                    state = "revoked" if row.revoked else "active"
                    print(
                        f"{row.prefix}\t{row.name}\t{','.join(row.scopes)}\t{state}\t"
                        f"{row.created_at.isoformat()}"
                    )
            else:
                row = keys_service.revoke(session=session, prefix=args.prefix)
                print(f"revoked {row.prefix} ({row.name})")
    finally:
        engine.dispose()
    return 0


def cmd_learn(args: argparse.Namespace, settings: Settings) -> int:
    from app.learning.runner import leader_lock, run_pass

    engine, sessions = _sessions(settings)
    lock = leader_lock(engine)
    try:
        if not lock.acquire():
            print(
                "another learner holds the lock (is the service running with the learner "
                "enabled?); nothing done",
                file=sys.stderr,
            )
            return 2
        results = run_pass(
            sessions=sessions, safety_lag_s=settings.learner_safety_lag_s, learner="cli"
        )
        for r in results:
            print(
                json.dumps(
                    {
                        "experiment": r.experiment,
                        "version": r.version,
                        "decisions_counted": r.decisions_counted,
                        "error": r.error,
                    }
                )
            )
        return 0
    finally:
        lock.release()
        engine.dispose()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="croupier", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate, then serve the API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    sub.add_parser("migrate", help="upgrade the database to the latest migration")
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", action="append", choices=keys_service.SCOPES, required=True)
    keys_sub.add_parser("list", help="list keys (never their secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    learn = sub.add_parser("learn", help="run the learner")
    learn.add_argument(
        "--once",
        action="store_true",
        required=True,
        help="one pass over every due experiment, then exit",
    )
    report = sub.add_parser("report", help="an experiment's report (as the API serves it)")
    report.add_argument("key", help="experiment key")
    report.add_argument("--format", choices=("md", "json", "html", "csv"), default="md")
    report.add_argument("--as-of", help="report the data stored by this ISO 8601 time")
    export = sub.add_parser("export", help="an experiment's decision log (DSJson, CSV, Parquet)")
    export.add_argument("key", help="experiment key")
    export.add_argument("--format", choices=("dsjson", "csv", "parquet"), default="dsjson")
    export.add_argument("--out", help="file to write (default: standard output)")
    export.add_argument("--as-of", help="export the data stored by this ISO 8601 time")
    evaluate = sub.add_parser(
        "evaluate", help="counterfactual evaluation of contextual policies on an experiment's log"
    )
    evaluate.add_argument("key", help="experiment key")
    evaluate.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='contextual settings to try, e.g. greedy=\'{"exploration": {"algorithm": '
        '"epsilon", "epsilon": 0.01}}\' (repeatable; merged over the current settings)',
    )
    evaluate.add_argument("--limit", type=int, default=100_000, help="most recent closed decisions")
    evaluate.add_argument("--alpha", type=float, default=0.05)
    evaluate.add_argument("--format", choices=("md", "json"), default="md")
    evaluate.add_argument("--promote", metavar="NAME", help="then serve this candidate")
    from simulations.cli import add_parsers

    add_parsers(sub)
    return p


def _as_of(text: str | None) -> datetime | None:
    """--as-of as an aware UTC time; ValueError with the reason."""
    if not text:
        return None
    try:
        as_of = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--as-of: not an ISO 8601 time: {text!r}") from None
    if as_of.tzinfo is None:
        raise ValueError("--as-of: give a time zone (e.g. 2026-11-27T10:00:00Z)")
    return as_of.astimezone(UTC)


def _on_experiment(
    args: argparse.Namespace, settings: Settings, run: Callable[..., T]
) -> tuple[T, None] | tuple[None, int]:
    """`run(session=, experiment=, as_of=)` on experiment `args.key` at `--as-of`; or the exit
    code when --as-of is malformed."""
    from app.experiments import service as experiments

    try:
        as_of = _as_of(args.as_of)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None, 2
    engine, sessions = _sessions(settings)
    try:
        with sessions() as session:
            experiment = experiments.get(session=session, key=args.key)
            return run(session=session, experiment=experiment, as_of=as_of), None
    finally:
        engine.dispose()


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from app.reports.export import write

    def run(**found: Any) -> int:  # the file is opened only once the experiment is found
        if not args.out:
            return write(fmt=args.format, out=sys.stdout.buffer, **found)
        with open(args.out, "wb") as out:
            return write(fmt=args.format, out=out, **found)

    count, failed = _on_experiment(args, settings, run)
    if failed is not None:
        return failed
    print(f"exported {count} decisions ({args.format})", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from app.evaluation import service as evaluation

    candidates: dict[str, dict[str, object]] = {}
    for item in args.candidate:
        name, sep, text = item.partition("=")
        try:
            value = json.loads(text) if sep else None
        except json.JSONDecodeError as exc:
            print(f"error: --candidate {name}: not JSON: {exc}", file=sys.stderr)
            return 2
        if not name or not isinstance(value, dict):
            print("error: --candidate takes NAME=JSON-object", file=sys.stderr)
            return 2
        candidates[name] = value
    engine, sessions = _sessions(settings)
    try:
        result = evaluation.evaluate(
            sessions=sessions,
            key=args.key,
            candidates=candidates,
            limit=args.limit,
            alpha=args.alpha,
            safety_lag_s=settings.learner_safety_lag_s,
        )
        if args.format == "json":
            print(result.model_dump_json(indent=2))
        else:
            print(evaluation.to_markdown(result), end="")
        if args.promote:
            if args.promote not in candidates:
                print(f"error: --promote {args.promote!r} is not a candidate", file=sys.stderr)
                return 2
            version = evaluation.promote(
                sessions=sessions,
                key=args.key,
                settings=candidates[args.promote],
                actor="cli",
                safety_lag_s=settings.learner_safety_lag_s,
            )
            print(f"promoted {args.promote!r}: now serving policy version {version}")
    finally:
        engine.dispose()
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from app.reports import render
    from app.reports.service import build_report

    report, failed = _on_experiment(args, settings, build_report)
    if report is None:
        return failed or 1
    if args.format == "json":
        print(report.model_dump_json(indent=2))
    elif args.format == "csv":
        print(render.to_csv(report), end="")
    elif args.format == "html":
        print(render.to_html(report), end="")
    else:
        print(render.to_markdown(report), end="")
    return 0


def cmd_simulate(args: argparse.Namespace, _: Settings) -> int:
    from simulations.cli import cmd_simulate as simulate

    return simulate(args)


def cmd_replay(args: argparse.Namespace, _: Settings) -> int:
    from simulations.cli import cmd_replay as replay

    return replay(args)


COMMANDS = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "keys": cmd_keys,
    "learn": cmd_learn,
    "report": cmd_report,
    "export": cmd_export,
    "evaluate": cmd_evaluate,
    "simulate": cmd_simulate,
    "replay": cmd_replay,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = get_settings()
    try:
        return COMMANDS[args.command](args, settings)
    except Exception as exc:  # a clear line for the terminal, not a traceback
        from app.errors import ProblemError

        if isinstance(exc, ProblemError):
            print(f"error: {exc.detail}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
