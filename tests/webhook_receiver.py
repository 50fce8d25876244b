"""A webhook receiver for tests: verifies every delivery with the Standard
Webhooks reference library and answers as it is told.

Run in a thread (``Receiver().start()``) or as a process of its own
(``python -m tests.webhook_receiver PORT``, the live tests), it
keeps, for each request, the webhook-id, the body and whether the
signature verified. How it answers comes from a script of modes, one per
request, then a default:

    ok       200 and the delivery counts as accepted
    error    500
    hang     never answers (holds the connection, then closes it)
    close    closes the connection without an answer
    slow     waits ``slow_seconds``, then 200 (accepted)

Control (JSON): POST /_control {"secret", "script", "default", "slow_seconds"};
GET /_received -> {"accepted": [...], "requests": n, "bad_signatures": n}.
Only an answered 2xx is "accepted", so a test can count duplicates by
webhook-id among them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.secrets: list[str] = []
        self.script: list[str] = []
        self.default = "ok"
        self.slow_seconds = 2.0
        self.hang_seconds = 30.0
        self.accepted: list[dict] = []
        self.requests = 0
        self.bad_signatures = 0

    def next_mode(self) -> str:
        with self.lock:
            self.requests += 1
            return self.script.pop(0) if self.script else self.default

    def verified(self, body: bytes, headers) -> bool:
        from standardwebhooks import Webhook

        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, dict(headers))
                return True
            except Exception:
                continue
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
    disable_nagle_algorithm = True  # headers and body are separate writes
    state: State

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, content) -> None:
        body = json.dumps(content).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.state.lock:
            self._json(200, {"accepted": list(self.state.accepted), "requests": self.state.requests,
                             "bad_signatures": self.state.bad_signatures})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_control":
            self._control(json.loads(body or b"{}"))
            return
        mode = self.state.next_mode()
        if mode in ("close", "hang"):
            if mode == "hang":
                time.sleep(self.state.hang_seconds)
            self.close_connection = True
            return
        if mode == "error":
            self._json(500, {"error": "receiver told to fail"})
            return
        if mode == "slow":
            time.sleep(self.state.slow_seconds)
        ok = self.state.verified(body, self.headers)
        with self.state.lock:
            if not ok:
                self.state.bad_signatures += 1
            else:
                self.state.accepted.append({"id": self.headers["webhook-id"], "at": time.time(),
                                            "body": json.loads(body), "path": self.path})
        self._json(200 if ok else 400, {"received": ok})

    def _control(self, settings: dict) -> None:
        with self.state.lock:
            if "secret" in settings:
                self.state.secrets = [settings["secret"]]
            if "secrets" in settings:
                self.state.secrets = list(settings["secrets"])
            for name in ("script", "default", "slow_seconds", "hang_seconds"):
                if name in settings:
                    setattr(self.state, name, settings[name])
        self._json(200, {"ok": True})


class Receiver:
    """The receiver in a thread of this process (fast tests)."""

    def __init__(self, port: int = 0):
        self.state = State()
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    receiver = Receiver(int(sys.argv[1]))
    print("ready", flush=True)
    receiver.server.serve_forever()


if __name__ == "__main__":
    main()
