"""A strategy loop in Python that trades through `warden serve`.

It calls the broker only through warden's proxy (`/proxy/{session}/...`) with `requests`, and follows
warden's event stream (`/v1/events`, Server-Sent Events) in a thread: when a grant is revoked it drops
what it derived from it (here: a quote cache), as an engine clears its symbol, feed and order caches.

Run by run_strategy.sh against a Kotak Neo mock broker, it plays ROUNDS intraday invalidations (the
mock's `POST /__mock/invalidate` ends the live token, as the broker does without notice) and checks:
no call failed, no order was executed twice (the mock counts duplicates by client order id), every
revocation arrived on the event stream, and the event numbers have no hole.

Usage: strategy.py WARDEN_URL TOKEN_FILE SESSION MOCK_URL [ROUNDS]
"""

import json
import sys
import threading
import time
import uuid

import requests

QUOTE = "script-details/1.0/quotes/neosymbol/nse_cm%7C11536/all"
ORDER = "quick/order/rule/ms/place"
CALLS_PER_ROUND = 20
WAIT_S = 20  # the longest wait for one event


class Events:
    """Follows /v1/events (SSE), reconnecting with Last-Event-ID so that no event is missed."""

    def __init__(self, base, token):
        self.base, self.token = base, token
        self.received = []
        self.last_id = None
        self.cond = threading.Condition()
        self.stop = False
        self.reconnects = 0
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
            if self.last_id is not None:
                headers["Last-Event-ID"] = str(self.last_id)
            try:
                with requests.get(f"{self.base}/v1/events", headers=headers, stream=True, timeout=(5, 60)) as r:
                    r.raise_for_status()
                    self.read(r)
            except requests.RequestException:
                pass
            if not self.stop:
                self.reconnects += 1
                time.sleep(0.2)

    def read(self, response):
        data = []
        for raw in response.iter_lines(decode_unicode=True):
            if self.stop:
                return
            if raw is None:
                continue
            if raw == "":
                if data:
                    event = json.loads("\n".join(data))
                    with self.cond:
                        if event.get("id") is not None:
                            self.last_id = event["id"]
                        self.received.append(event)
                        self.cond.notify_all()
                data = []
            elif raw.startswith("data:"):
                data.append(raw[5:].lstrip())

    def wait_for(self, predicate, what):
        deadline = time.monotonic() + WAIT_S
        with self.cond:
            while True:
                found = [e for e in self.received if predicate(e)]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"strategy: no {what} within {WAIT_S} s")
                self.cond.wait(left)


def main():
    base, token_file, session, mock = sys.argv[1:5]
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    token = open(token_file).read().strip()
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    proxy = f"{base}/proxy/{session}"
    events = Events(base, token)

    status = http.get(f"{base}/v1/sessions/{session}", timeout=10).json()
    first_generation = status["generation"]
    print(f"strategy: {session} is {status['state']}, generation {first_generation}")

    quotes = {}
    failed, placed = [], []

    def on_revoked(event):
        quotes.clear()  # what was derived from the old grant is dropped

    def call(method, path, **kwargs):
        answer = http.request(method, f"{proxy}/{path}", timeout=70, **kwargs)
        if answer.status_code != 200:
            failed.append((method, path, answer.status_code, answer.text[:200]))
        return answer

    def trade(round_no):
        for i in range(CALLS_PER_ROUND):
            q = call("GET", QUOTE)
            if q.status_code == 200:
                quotes["INFY"] = q.json()
            client_order_id = f"r{round_no}-{i}-{uuid.uuid4().hex[:8]}"
            order = {"am": "NO", "dq": "0", "es": "nse_cm", "mp": "0", "pc": "CNC", "pf": "N", "pr": "0",
                     "pt": "MKT", "qt": "1", "rt": "DAY", "tp": "0", "ts": "INFY-EQ", "tt": "B",
                     "ig": client_order_id}
            o = call("POST", ORDER, data={"jData": json.dumps(order)})
            if o.status_code == 200:
                placed.append(client_order_id)

    trade(0)
    for round_no in range(1, rounds + 1):
        generation = http.get(f"{base}/v1/sessions/{session}", timeout=10).json()["generation"]
        ended = requests.post(f"{mock}/__mock/invalidate", timeout=10).json()["ended"]
        print(f"strategy: round {round_no}: the broker ended {ended} token(s) of generation {generation}")
        trade(round_no)  # the first call meets the dead token; warden logs in again and retries
        revoked = events.wait_for(
            lambda e: e.get("session") == session and e.get("type") == "revoked"
            and e["data"].get("generation") == generation, f"revocation of generation {generation}")
        on_revoked(revoked)
        events.wait_for(
            lambda e: e.get("session") == session and e.get("type") == "grant_installed"
            and e["data"].get("generation") == generation + 1, f"grant of generation {generation + 1}")

    events.stop = True
    status = http.get(f"{base}/v1/sessions/{session}", timeout=10).json()
    stats = requests.get(f"{mock}/__mock/stats", timeout=10).json()
    model = stats["model"]
    ids = [e["id"] for e in events.received if e.get("id") is not None]
    holes = [(a, b) for a, b in zip(ids, ids[1:]) if b != a + 1]
    revocations = [e for e in events.received if e.get("session") == session and e.get("type") == "revoked"]
    report = {
        "rounds": rounds,
        "calls": (rounds + 1) * CALLS_PER_ROUND * 2,
        "failed_calls": len(failed),
        "orders_placed": len(placed),
        "orders_executed_by_broker": model["orders_executed"],
        "duplicate_orders": model["duplicate_orders"],
        "revocations_received": len(revocations),
        "generation": [first_generation, status["generation"]],
        "events_received": len(ids),
        "event_id_holes": len(holes),
        "stream_reconnects": events.reconnects,
        "broker_logins": model["logins"],
    }
    print(json.dumps(report))
    problems = []
    if failed:
        problems.append(f"{len(failed)} failed calls, first: {failed[0]}")
    if model["duplicate_orders"] != 0:
        problems.append(f"{model['duplicate_orders']} duplicate orders")
    if model["orders_executed"] != len(placed):
        problems.append(f"the broker executed {model['orders_executed']} orders, the strategy placed {len(placed)}")
    if len(revocations) != rounds:
        problems.append(f"{len(revocations)} revocation events for {rounds} invalidations")
    if status["generation"] != first_generation + rounds:
        problems.append(f"generation {status['generation']}, expected {first_generation + rounds}")
    if holes:
        problems.append(f"event numbers with holes: {holes[:3]}")
    if problems:
        raise SystemExit("strategy: " + "; ".join(problems))
    print("strategy: ok")


if __name__ == "__main__":
    main()
