"""A small FastAPI app behind sessiond (docs/integration.md).

``GET /me`` shows who is signed in, ``POST /notes`` stores a note for the session's
principal (an unsafe method, so sessiond checks the request's origin), ``GET /public``
works with or without a session.

    SESSIOND_URL=http://127.0.0.1:7878 uvicorn app:app --port 3000
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from sessiond_auth import Sessiond, SessiondProblem, SessionIdentity


class Note(BaseModel):
    text: str = Field(max_length=1000)


def create_app(sessiond_url: str) -> FastAPI:
    sessiond = Sessiond(sessiond_url)
    quiet = Sessiond(sessiond_url, touch=False)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await sessiond.aclose()
        await quiet.aclose()

    app = FastAPI(lifespan=lifespan)
    # Notes per principal, bounded: a recipe, not a database.
    notes: dict[str, list[str]] = {}

    @app.exception_handler(SessiondProblem)
    async def problem(_request: Request, exc: SessiondProblem) -> Response:
        return Response(
            content=exc.body,
            status_code=exc.status_code,
            media_type="application/problem+json",
            headers=exc.headers,
        )

    @app.get("/public")
    async def public(who: Optional[SessionIdentity] = Depends(quiet.optional)):
        return {"signedIn": who is not None, "principal": who.principal if who else None}

    @app.get("/me")
    async def me(who: SessionIdentity = Depends(sessiond.required)):
        return {"principal": who.principal, "role": who.role, "handle": who.handle, "userId": who.user_id}

    @app.post("/notes")
    async def add_note(note: Note, who: SessionIdentity = Depends(sessiond.required)):
        mine = notes.setdefault(who.principal, [])
        mine.append(note.text)
        del mine[:-100]
        return JSONResponse({"principal": who.principal, "notes": mine})

    return app


app = create_app(os.environ.get("SESSIOND_URL", "http://127.0.0.1:7878"))
