"""FastAPI dependency that trusts sessiond through its forward-auth endpoint.

Each request's cookie (or bearer token) is checked by ``GET /v1/auth/verify`` on
sessiond; the identity it answers with is what the route receives. The app never parses
or stores the token. sessiond decides everything (live or ended and why, the CSRF origin
check for unsafe methods); this module relays the headers that decision needs and maps
the answer: 200 -> the identity, 400/401/403 -> the same problem+json to the client,
anything else (sessiond down, slow, 5xx) -> 503, never "let the request through".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Optional

import httpx
from fastapi import HTTPException, Request

log = logging.getLogger("sessiond_auth")

# Headers of the incoming request that sessiond's decision depends on.
RELAYED = ("cookie", "authorization", "origin", "referer", "sec-fetch-site", "user-agent")


@dataclass(frozen=True)
class SessionIdentity:
    principal: str
    role: str
    handle: str
    user_id: Optional[str]


class SessiondProblem(HTTPException):
    """sessiond's own problem+json, passed on to the client unchanged."""

    def __init__(self, status: int, body: bytes):
        super().__init__(status_code=status)
        self.body = body


class Sessiond:
    """One per app: holds a pooled HTTP client to sessiond.

    ``touch``: whether a checked request counts as activity. ``timeout``: bound on the
    verify call, in seconds.
    """

    def __init__(self, sessiond_url: str, *, touch: bool = True, timeout: float = 2.0):
        self.verify_url = sessiond_url.rstrip("/") + "/v1/auth/verify"
        self.touch = touch
        self.client = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _verify(self, request: Request) -> SessionIdentity | SessiondProblem:
        """The identity, or the refusal (401) as sessiond worded it."""
        headers = {
            # The original method and the app's own origin: sessiond's CSRF check for
            # unsafe methods compares against the app's origin, not its own.
            "x-forwarded-method": request.method,
            "x-forwarded-proto": request.url.scheme,
            "x-forwarded-host": request.headers.get("host", ""),
            "x-sessiond-touch": "1" if self.touch else "0",
        }
        for name in RELAYED:
            value = request.headers.get(name)
            if value is not None:
                headers[name] = value
        try:
            answer = await self.client.get(self.verify_url, headers=headers)
        except httpx.HTTPError as err:
            log.warning("sessiond unreachable: %s", err)
            raise unavailable() from err
        if answer.status_code == 200:
            h = answer.headers
            return SessionIdentity(
                principal=h.get("x-session-principal", ""),
                role=h.get("x-session-role", ""),
                handle=h.get("x-session-handle", ""),
                user_id=h.get("x-session-user") or None,
            )
        if answer.status_code == 401:
            # unauthenticated, or session_expired with its reason: the client needs it.
            return SessiondProblem(401, answer.content)
        if answer.status_code in (400, 403):
            # forbidden_origin, duplicate_cookie: refused whether or not a session is
            # optional for the route.
            raise SessiondProblem(answer.status_code, answer.content)
        log.warning("sessiond answered %s", answer.status_code)
        raise unavailable()

    async def required(self, request: Request) -> SessionIdentity:
        """Dependency: the live session, or sessiond's 401 problem."""
        result = await self._verify(request)
        if isinstance(result, SessiondProblem):
            raise result
        return result

    async def optional(self, request: Request) -> Optional[SessionIdentity]:
        """Dependency: the live session, or None without one."""
        result = await self._verify(request)
        return None if isinstance(result, SessiondProblem) else result


def unavailable() -> SessiondProblem:
    body = json.dumps(
        {"type": "about:blank", "title": "Session service unavailable", "status": 503, "code": "store_unavailable"}
    ).encode()
    problem = SessiondProblem(503, body)
    problem.headers = {"retry-after": "1"}
    return problem
