#!/usr/bin/env python3
"""A scan-queue webhook receiver: verifies each delivery's signature, de-duplicates on its
delivery id, and prints one JSON line per new event. Python's standard library only.

    SCAN_QUEUE_WEBHOOK_SECRET=... python3 webhook_receiver.py 127.0.0.1 9000

then start the server with --webhook http://127.0.0.1:9000/ --webhook-secret "$SCAN_QUEUE_WEBHOOK_SECRET".
Answer 2xx only once the event is safely handled: anything else is retried.
"""

import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ["SCAN_QUEUE_WEBHOOK_SECRET"].encode()
seen = set()  # delivery ids already handled (keep them durably in a real receiver)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        given = self.headers.get("X-ScanQueue-Signature-256", "")
        if not hmac.compare_digest(expected, given):
            self.send_response(401)
            self.end_headers()
            return
        delivery = self.headers["X-ScanQueue-Delivery"]
        if delivery not in seen:
            seen.add(delivery)
            event = json.loads(body)
            task, result = event["task"], event["result"]
            print(json.dumps({
                "delivery": delivery,
                "event": event["event"],
                "task": task["id"],
                "application": task["applicationId"],
                "status": task["statusString"],
                "reason": task["reason"],
                "download": result and result["downloadPath"],
            }), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    HTTPServer((host, port), Receiver).serve_forever()
