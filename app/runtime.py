"""What one service process holds: settings, engine, session factory and in-memory caches.

Created by the app's lifespan and reached from request handlers through `app.state.runtime`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.decisions.cache import PolicyCache
from app.decisions.writer import DecisionWriter
from app.security import KeyCache
from app.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    policies: PolicyCache
    writer: DecisionWriter
    keys: KeyCache
    process_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
