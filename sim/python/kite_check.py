#!/usr/bin/env python3
"""Checks warden-sim's Kite mock with Zerodha's published Python client, kiteconnect (from PyPI).

Usage: kite_check.py BASE_URL   (a `warden-sim mock-broker --broker zerodha` with the demo account)

What it exercises, each through kiteconnect's own code (its routes, headers, form encoding, response
parsing and exception mapping), with the mock's root as kiteconnect's `root`:
  1. login: a request token from the mock's login page, then KiteConnect.generate_session (the
     request_token + SHA-256 checksum exchange at POST /session/token);
  2. a quote (GET /quote) and the profile;
  3. an order (POST /orders/regular with a tag), the same order again (the broker counts a duplicate),
     and the order book;
  4. the token dies (an intraday invalidation through the mock's control route): the next call raises
     kiteconnect.exceptions.TokenException with HTTP 403; the used request token cannot log in again;
  5. a new login, then logout (invalidate_access_token: DELETE /session/token), after which the token
     is refused with TokenException;
  6. the mock's counters agree: 2 logins, 1 failed login, 2 orders executed, 1 duplicate, 1 logout.
Exits non-zero on the first check that fails.
"""

import importlib.metadata
import json
import sys
import urllib.request

from kiteconnect import KiteConnect, exceptions

API_KEY = "mockkiteapikey"
API_SECRET = "mock-kite-api-secret"


def call(root, path, method="GET"):
    request = urllib.request.Request(root + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def request_token(root):
    """A person logs in on the (mock's) Kite login page and gets a request token."""
    return call(root, f"/connect/login?v=3&api_key={API_KEY}")["data"]["request_token"]


def main():
    root = sys.argv[1].rstrip("/")
    checks = []

    def check(name, condition, detail=""):
        if not condition:
            print(f"FAILED: {name} {detail}", file=sys.stderr)
            sys.exit(1)
        checks.append(name)
        print(f"ok: {name}")

    def refused(name, action):
        try:
            action()
        except exceptions.TokenException as e:
            check(name, e.code == 403, f"(HTTP {e.code})")
            return
        check(name, False, "(no TokenException)")

    kite = KiteConnect(api_key=API_KEY, root=root, timeout=10)
    first_token = request_token(root)
    session = kite.generate_session(first_token, api_secret=API_SECRET)
    check("login with request_token and checksum", bool(session["access_token"]) and session["user_id"] == "AB1234")

    quote = kite.quote(["NSE:INFY"])
    check("a quote", quote["NSE:INFY"]["last_price"] > 0, repr(quote))
    check("the profile", kite.profile()["user_id"] == "AB1234")

    order = dict(variety=kite.VARIETY_REGULAR, exchange=kite.EXCHANGE_NSE, tradingsymbol="INFY",
                 transaction_type=kite.TRANSACTION_TYPE_BUY, quantity=1, product=kite.PRODUCT_CNC,
                 order_type=kite.ORDER_TYPE_MARKET, tag="py-order-1")
    first = kite.place_order(**order)
    check("an order", bool(first))
    second = kite.place_order(**order)
    check("the same order again gets another id", second != first)
    check("the order book", [o["order_id"] for o in kite.orders()][-2:] == [first, second])

    call(root, "/__mock/invalidate", method="POST")
    refused("a dead token raises TokenException (403)", lambda: kite.quote(["NSE:INFY"]))
    refused("a used request token cannot log in again", lambda: kite.generate_session(first_token, api_secret=API_SECRET))

    kite.generate_session(request_token(root), api_secret=API_SECRET)
    check("a new login", kite.profile()["user_id"] == "AB1234")
    check("logout", kite.invalidate_access_token() is True)
    refused("the logged-out token raises TokenException", lambda: kite.profile())

    stats = call(root, "/__mock/stats")["model"]
    expected = {"logins": 2, "login_failures": 1, "orders_executed": 2, "duplicate_orders": 1, "logouts": 1}
    got = {name: stats[name] for name in expected}
    check("the mock's counters", got == expected, f"{got} != {expected}")
    print(f"kiteconnect {importlib.metadata.version('kiteconnect')} against the Kite mock: {len(checks)} checks passed")


if __name__ == "__main__":
    main()
