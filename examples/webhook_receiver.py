#!/usr/bin/env python3
"""A payrecon webhook receiver using only Python's standard library.

It checks each request's Standard Webhooks signature itself (not with payrecon's code), rejects
stale timestamps, dedupes on webhook-id, and answers 204. Use it to try payrecon's outbox, or as
the shape of your own receiver.

    PAYRECON_WEBHOOK_SECRET=whsec_... python3 examples/webhook_receiver.py 127.0.0.1:8090
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRETS = [
    base64.b64decode(s[len("whsec_"):] if s.startswith("whsec_") else s)
    for s in os.environ["PAYRECON_WEBHOOK_SECRET"].split()
]
TOLERANCE = 5 * 60
seen = set()
lock = threading.Lock()
counts = {"requests": 0, "events": 0, "duplicates": 0, "bad": 0}


def verify(msg_id, timestamp, body, header):
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = {
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in SECRETS
    }
    return any(hmac.compare_digest(sig, e) for sig in header.split() for e in expected)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        msg_id = self.headers.get("webhook-id", "")
        timestamp = self.headers.get("webhook-timestamp", "0")
        ok = verify(msg_id, timestamp, body, self.headers.get("webhook-signature", ""))
        fresh = abs(time.time() - int(timestamp)) <= TOLERANCE
        with lock:
            counts["requests"] += 1
            if not (ok and fresh):
                counts["bad"] += 1
                self.send_response(401)
                self.end_headers()
                return
            if msg_id in seen:
                counts["duplicates"] += 1
            else:
                seen.add(msg_id)
                counts["events"] += 1
                event = json.loads(body)
                if not os.environ.get("QUIET"):
                    d = event["data"]
                    print(f'{event["type"]:<18} {d["provider"]} {d["session_id"]} {d["amount"]} {d["from"]}->{d["to"]}', flush=True)
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        with lock:
            payload = json.dumps(counts).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8090").rsplit(":", 1)
    print(f"receiver on http://{host}:{port}/ (GET / for counts)", flush=True)
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
