"""The baseline: a bare FastAPI endpoint returning constant JSON, served exactly like Croupier."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()
ANSWER = {
    "decision_id": "00000000000000000000000000000000",
    "variant": "b",
    "payload": {"model": "v2"},
    "propensity": 0.5,
    "policy_version": 1,
    "fallback": False,
    "experimental": True,
}


@app.post("/v1/experiments/{key}/decisions")
async def decide(key: str) -> dict[str, object]:
    return ANSWER
