"""The FastAPI webhook recipe against a real sessiond: sessiond delivers lifecycle events
to the app, which verifies them with the official standardwebhooks package; a forged
delivery is refused.

    SESSIOND_BIN=target/debug/sessiond python -m unittest test_webhooks.py
"""

from __future__ import annotations

import time
import unittest

import httpx

from test_app import App, Sessiond
from webhooks import create_webhook_app

SECRET = "whsec_ZmFzdGFwaS1yZWNpcGUtc2VjcmV0LTAxMjM0NTY3ODk="


def until(what: str, probe, seconds: float = 15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class WebhookRecipe(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.events: list[dict] = []
        cls.app = App("", create_webhook_app(SECRET, cls.events.append))
        cls.sessiond = Sessiond(
            '[webhook_delivery]\npoll_interval = "50ms"\nlease_ttl = "1s"\n'
            f'[[webhooks]]\nid = "fastapi"\nurl = "{cls.app.url}/webhooks/sessiond"\n'
            f'secret = "{SECRET}"\nevents = ["session.created", "session.ended"]\n'
        )

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sessiond.stop()
        cls.app.stop()

    def test_signed_lifecycle_events_pass_the_official_verifier(self) -> None:
        until("the endpoint's cursor", lambda: self.sessiond.admin("GET", "/v1/admin/webhooks")
              .json()["endpoints"][0]["cursor"] is not None)
        r = httpx.post(self.sessiond.url + "/v1/session", json={"bearer": True}, timeout=5)
        self.assertEqual(r.status_code, 201)
        handle = r.json()["handle"]
        self.assertEqual(self.sessiond.admin("DELETE", f"/v1/admin/sessions/{handle}").status_code, 204)
        ended = until("the ended event", lambda: next(
            (e for e in self.events if e["type"] == "session.ended"), None))
        created = next(e for e in self.events if e["type"] == "session.created")
        self.assertEqual(created["data"]["handle"], handle)
        self.assertEqual(ended["data"]["handle"], handle)
        self.assertEqual(ended["data"]["reason"], "revoked")
        self.assertRegex(ended["id"], r"^evt_\d+$")
        self.assertLess(self.events.index(created), self.events.index(ended))

    def test_a_forged_delivery_is_refused(self) -> None:
        before = len(self.events)
        r = httpx.post(self.app.url + "/webhooks/sessiond", content=b'{"type":"session.ended","data":{}}',
                       headers={"content-type": "application/json", "webhook-id": "evt_1",
                                "webhook-timestamp": str(int(time.time())),
                                "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl"}, timeout=5)
        self.assertEqual(r.status_code, 401)
        self.assertEqual(len(self.events), before)


if __name__ == "__main__":
    unittest.main()
