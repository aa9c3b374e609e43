#!/usr/bin/env bash
# Runs sim/serve/examples/python/strategy.py — a strategy loop on `requests`, trading through `warden serve`
# and following its event stream — against a Kotak Neo mock broker, across 3 intraday invalidations.
# Builds a venv of its own (requests from PyPI); starts the mock and `warden serve --config` with a
# warden.toml written here; stops both at the end.
# Usage: sim/serve/examples/python/run_strategy.sh PATH/TO/warden-sim PATH/TO/warden
set -euo pipefail
cd "$(dirname "$0")/../../../.."
sim="$1"
warden="$2"
REQUESTS_VERSION=2.32.3
work=$(mktemp -d)
trap 'kill "${mock_pid:-}" "${serve_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "requests==$REQUESTS_VERSION"

# Waits for a line matching a sed expression in a log; prints the match.
wait_log() {
  local log="$1" expr="$2" found=""
  for _ in $(seq 1 300); do
    found=$(sed -n "$expr" "$log" | head -1)
    [ -n "$found" ] && break
    sleep 0.1
  done
  if [ -z "$found" ]; then
    echo "nothing matched $expr in $log:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "$found"
}

"$sim" mock-broker --broker kotak-neo --for 600s > "$work/mock.log" 2>&1 &
mock_pid=$!
mock=$(wait_log "$work/mock.log" 's/.*listening on \(http[^ ]*\).*/\1/p')

# The mock's demo account, by reference: names in the environment, the PIN and the TOTP seed in 0600 files.
umask 077
printf '123456\n' > "$work/kotak_mpin"
printf 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n' > "$work/kotak_totp_secret"
cat > "$work/warden.toml" <<TOML
[store]
path = "$work/store"

[sessions.kotak]
broker = "kotak_neo"
login_url = "$mock"
# The mock plays 3 invalidations within a minute, a real account's come hours apart: 4 logins must fit
# in the login limit's window (3 per 5 minutes by default, which would hold the 4th back 5 minutes).
policy = { login_rate = { max = 10, per = "5m" } }

[sessions.kotak.credentials]
consumer_key = "env:KOTAK_CONSUMER_KEY"
mobile_number = "env:KOTAK_MOBILE"
ucc = "env:KOTAK_UCC"
mpin = "file:$work/kotak_mpin"
totp_secret = "file:$work/kotak_totp_secret"

[serve]
listen = "127.0.0.1:0"
TOML
export KOTAK_CONSUMER_KEY=mock-kotak-consumer-key KOTAK_MOBILE=+919999999999 KOTAK_UCC=MOCK1
export WARDEN_KEY
WARDEN_KEY=$(head -c 32 /dev/urandom | base64)
"$warden" check --config "$work/warden.toml"
RUST_LOG=info "$warden" serve --config "$work/warden.toml" > "$work/serve.log" 2>&1 &
serve_pid=$!
address=$(wait_log "$work/serve.log" 's/.*warden serve is listening.*address=\([^ ]*\).*/\1/p')
if ! "$work/venv/bin/python" sim/serve/examples/python/strategy.py "http://$address" "$work/warden-serve.token" \
  kotak "$mock" 3; then
  echo "--- warden serve's log:" >&2
  tail -50 "$work/serve.log" >&2
  exit 1
fi
