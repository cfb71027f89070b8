"""Receiving sessiond's lifecycle webhooks in FastAPI (docs/integration.md, "Verify a
webhook").

The official ``standardwebhooks`` package checks the signature and the timestamp over the
raw body, so the route reads ``await request.body()``, never a parsed model.

    SESSIOND_WEBHOOK_SECRET=whsec_... uvicorn webhooks:app --port 3001
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Awaitable, Callable, Union

from fastapi import FastAPI, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

OnEvent = Callable[[dict], Union[None, Awaitable[None]]]


def create_webhook_app(secret: str, on_event: OnEvent, remember: int = 10_000) -> FastAPI:
    """An app with ``POST /webhooks/sessiond``: verifies each delivery with ``secret``
    (the endpoint's ``whsec_...`` secret), drops repeats by ``webhook-id`` (delivery is
    at least once) and hands ``{id, type, timestamp, data}`` to ``on_event``. A bad
    signature or a stale timestamp is answered 401 and never reaches ``on_event``."""
    wh = Webhook(secret)
    seen: OrderedDict[str, None] = OrderedDict()  # recent webhook-ids, bounded
    app = FastAPI()

    @app.post("/webhooks/sessiond")
    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            event = wh.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return Response(status_code=401)
        msg_id = request.headers["webhook-id"]
        if msg_id in seen:
            return Response(status_code=204)
        result = on_event({"id": msg_id, **event})
        if result is not None:
            await result
        seen[msg_id] = None
        if len(seen) > remember:
            seen.popitem(last=False)
        return Response(status_code=204)

    return app


app = create_webhook_app(
    os.environ.get("SESSIOND_WEBHOOK_SECRET", ""),
    lambda e: print(e["type"], e["data"].get("handle")),
) if os.environ.get("SESSIOND_WEBHOOK_SECRET") else None
