"""The FastAPI application: create_app(settings) and its lifespan.

The lifespan opens the engine, refuses to start on a database behind the migrations, starts the
decision writer (group commit), the policy refresher and, when enabled, the learner loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import errors, health, migrate
from app.alerts.metrics import refresh_open_alerts
from app.alerts.router import router as alerts_router
from app.dashboard.router import router as dashboard_router
from app.db import make_engine, make_session_factory
from app.decisions.cache import PolicyCache
from app.decisions.fallback import Fallback
from app.decisions.router import fast_route as decisions_fast_route
from app.decisions.router import router as decisions_router
from app.decisions.writer import DecisionWriter
from app.evaluation.router import router as evaluation_router
from app.experiments.router import router as experiments_router
from app.keys.router import router as keys_router
from app.learning.runner import learner_loop
from app.limits import BodyLimitMiddleware
from app.metrics_router import router as metrics_router
from app.outcomes.router import router as outcomes_router
from app.reports.router import router as reports_router
from app.rollouts.router import router as rollouts_router
from app.runtime import Runtime
from app.security import KeyCache
from app.settings import Settings, get_settings
from app.webhooks.router import router as webhooks_router
from app.webhooks.worker import DeliveryPolicy, delivery_loop

log = logging.getLogger("croupier")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        if not migrate.is_at_head(engine):
            engine.dispose()
            raise RuntimeError(
                "the database schema is not at the latest migration; run `croupier migrate`"
            )
        sessions = make_session_factory(engine)
        runtime = Runtime(
            settings=settings,
            engine=engine,
            sessions=sessions,
            policies=PolicyCache(sessions),
            writer=DecisionWriter(
                engine,
                max_batch=settings.group_commit_max_batch,
                max_delay_s=settings.max_commit_delay_s,
                connections=settings.writer_connections,
            ),
            keys=KeyCache(settings.key_cache_ttl_s),
        )
        app.state.runtime = runtime
        # Everything allocated so far lives as long as the process: keep it out of the
        # cyclic collector's generations, so collections on the decide path stay short.
        gc.freeze()
        runtime.writer.start()
        # Degraded mode: decide from memory and spool when the database is down or slow.
        fallback = Fallback(
            settings=settings, engine=engine, sessions=sessions, policies=runtime.policies
        )
        fallback.open()
        app.state.fallback = fallback
        fallback.start()
        tasks = [asyncio.create_task(runtime.policies.run(settings.policy_check_interval_s))]
        await asyncio.to_thread(refresh_open_alerts, engine)
        if settings.webhooks_enabled:  # outbox delivery: never on the decide path
            tasks.append(
                asyncio.create_task(
                    delivery_loop(
                        sessions=sessions,
                        interval_s=settings.webhook_tick_s,
                        policy=DeliveryPolicy.from_settings(settings),
                    )
                )
            )
        if settings.learner_enabled:
            tasks.append(
                asyncio.create_task(
                    learner_loop(
                        engine=engine,
                        sessions=sessions,
                        tick_s=settings.learner_tick_s,
                        safety_lag_s=settings.learner_safety_lag_s,
                        learner=runtime.process_name,
                        controller_interval_s=settings.controller_interval_s,
                        controller_enabled=settings.controller_enabled,
                        settings=settings,
                    )
                )
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runtime.writer.stop()
            await fallback.stop()
            engine.dispose()

    app = FastAPI(
        title="Croupier",
        version="0.1.0",
        summary="Decisions with exact propensities: sticky A/B splits and bandits that learn.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.router.routes.append(decisions_fast_route)  # before the routers: matched at once
    for router in (
        decisions_router,
        health.router,
        metrics_router,
        alerts_router,
        webhooks_router,
        experiments_router,
        outcomes_router,
        keys_router,
        reports_router,
        evaluation_router,
        rollouts_router,
        dashboard_router,
    ):
        app.include_router(router)
    return app
