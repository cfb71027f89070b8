"""The FastAPI recipe against a real sessiond (the debug binary on a free port) and the
app served by uvicorn on another: identity, sign-in rotation, the CSRF origin check on an
unsafe method, revocation seen at once, sessiond down answered 503.

    SESSIOND_BIN=target/debug/sessiond python -m unittest test_app.py
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

import httpx
import uvicorn

from app import create_app

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SESSIOND_BIN", str(ROOT / "target" / "debug" / "sessiond"))
API_KEY = "integration-admin-key-0123456789"
TICKET_SECRET = "integration-ticket-secret-0123456789abcdef"


class Sessiond:
    """`sessiond serve --dev` on a free port with a temporary data dir."""

    def __init__(self, extra: str = "") -> None:
        self.dir = tempfile.mkdtemp(prefix="sessiond-fastapi-")
        config = Path(self.dir, "sessiond.toml")
        config.write_text(
            f'dev = true\nstore = "sqlite"\napi_keys = ["{API_KEY}"]\n'
            f'[tickets]\nhs256_secret = "{TICKET_SECRET}"\n{extra}'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
        env["RUST_LOG"] = "warn"
        self.proc = subprocess.Popen(
            [BIN, "serve", "--config", str(config), "--listen", "127.0.0.1:0",
             "--data-dir", str(Path(self.dir, "data")), "--dev"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=self.dir, text=True,
        )
        deadline = time.monotonic() + 30
        self.url = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"sessiond listening on (http://\S+)", line)
            if m:
                self.url = m.group(1).rstrip("/")
                break
        if self.url is None:
            self.stop()
            raise RuntimeError("sessiond did not announce its address")

    def admin(self, method: str, path: str, json=None) -> httpx.Response:
        return httpx.request(method, self.url + path, json=json,
                             headers={"authorization": f"Bearer {API_KEY}"}, timeout=5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class App:
    """The recipe's app served by uvicorn on a free port, in a thread."""

    def __init__(self, sessiond_url: str, asgi_app=None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        asgi_app = asgi_app or create_app(sessiond_url)
        config = uvicorn.Config(asgi_app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


def session_cookie(response: httpx.Response) -> str:
    for value in response.headers.get_list("set-cookie"):
        pair = value.split(";", 1)[0]
        if pair.startswith("sessiond="):
            return pair
    raise AssertionError("sessiond set no cookie")


class FastApiRecipe(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.sessiond = Sessiond()
        cls.app = App(cls.sessiond.url)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.app.stop()
        cls.sessiond.stop()

    def new_session(self) -> tuple[str, dict]:
        r = httpx.post(self.sessiond.url + "/v1/session", timeout=5)
        self.assertEqual(r.status_code, 201)
        return session_cookie(r), r.json()

    def get(self, path: str, **headers) -> httpx.Response:
        return httpx.get(self.app.url + path, headers=headers, timeout=5)

    def test_no_session_is_sessionds_401(self) -> None:
        r = self.get("/me")
        self.assertEqual(r.status_code, 401)
        self.assertIn("application/problem+json", r.headers["content-type"])
        self.assertEqual(r.json()["code"], "unauthenticated")
        self.assertEqual(self.get("/public").json(), {"signedIn": False, "principal": None})

    def test_live_session_identity_and_forged_header_ignored(self) -> None:
        cookie, session = self.new_session()
        r = self.get("/me", cookie=cookie, **{"x-session-principal": "user:admin"})
        self.assertEqual(r.status_code, 200)
        me = r.json()
        self.assertEqual(me["principal"], session["principal"])
        self.assertEqual(me["handle"], session["handle"])
        self.assertIsNone(me["userId"])

    def test_sign_in_rotates(self) -> None:
        cookie, _ = self.new_session()
        t = self.sessiond.admin("POST", "/v1/admin/tickets", {"user_id": "ada", "role": "editor"})
        self.assertEqual(t.status_code, 200, t.text)
        r = httpx.post(self.sessiond.url + "/v1/session/signin", json={"ticket": t.json()["ticket"]},
                       headers={"cookie": cookie}, timeout=5)
        self.assertEqual(r.status_code, 200, r.text)
        rotated = session_cookie(r)
        me = self.get("/me", cookie=rotated).json()
        self.assertEqual(me["principal"], "user:ada")
        self.assertEqual(me["userId"], "ada")
        self.assertEqual(self.get("/me", cookie=cookie).status_code, 401)

    def test_unsafe_method_checks_origin(self) -> None:
        cookie, session = self.new_session()

        def post(origin: str) -> httpx.Response:
            return httpx.post(self.app.url + "/notes", json={"text": "hello"},
                              headers={"cookie": cookie, "origin": origin}, timeout=5)

        evil = post("http://evil.example")
        self.assertEqual(evil.status_code, 403)
        self.assertEqual(evil.json()["code"], "forbidden_origin")
        ok = post(self.app.url)
        self.assertEqual(ok.status_code, 200, ok.text)
        self.assertEqual(ok.json(), {"principal": session["principal"], "notes": ["hello"]})

    def test_revoked_is_refused_with_reason(self) -> None:
        cookie, session = self.new_session()
        self.assertEqual(self.get("/me", cookie=cookie).status_code, 200)
        self.assertEqual(self.sessiond.admin("DELETE", f"/v1/admin/sessions/{session['handle']}").status_code, 204)
        r = self.get("/me", cookie=cookie)
        self.assertEqual(r.status_code, 401)
        self.assertEqual(r.json()["code"], "session_expired")
        self.assertEqual(r.json()["reason"], "revoked")

    def test_sessiond_down_is_503(self) -> None:
        down = App("http://127.0.0.1:9")
        try:
            cookie, _ = self.new_session()
            r = httpx.get(down.url + "/me", headers={"cookie": cookie}, timeout=5)
            self.assertEqual(r.status_code, 503)
            self.assertEqual(r.headers["retry-after"], "1")
            self.assertEqual(r.json()["code"], "store_unavailable")
        finally:
            down.stop()


if __name__ == "__main__":
    unittest.main()
