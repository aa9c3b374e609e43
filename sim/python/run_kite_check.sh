#!/usr/bin/env bash
# Runs sim/python/kite_check.py — Zerodha's published client, kiteconnect, from PyPI — against a Kite mock
# broker (`warden-sim mock-broker --broker zerodha`). Builds a venv of its own; the mock stops by itself.
# Usage: sim/python/run_kite_check.sh PATH/TO/warden-sim
set -euo pipefail
cd "$(dirname "$0")/../.."
sim="$1"
KITECONNECT_VERSION=5.2.2
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "kiteconnect==$KITECONNECT_VERSION"
"$sim" mock-broker --broker zerodha --for 120s > "$work/mock.log" 2>&1 &
pid=$!
base=""
for _ in $(seq 1 100); do
  base=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$work/mock.log" | head -1)
  [ -n "$base" ] && break
  sleep 0.1
done
if [ -z "$base" ]; then
  echo "the mock did not start:" >&2
  cat "$work/mock.log" >&2
  exit 1
fi
"$work/venv/bin/python" sim/python/kite_check.py "$base"
