#!/usr/bin/env bash
# Stops the throwaway cluster that tests/pg/start.sh started (or the one in $WARDEN_PG_DIR) and deletes
# its directory.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
DIR="${WARDEN_PG_DIR:-$(cat /tmp/warden-pg.current 2>/dev/null || true)}"
[[ -n "$DIR" && -d "$DIR/data" ]] || { echo "stop.sh: no cluster to stop" >&2; exit 0; }
RUN=()
[[ "$(id -u)" == 0 ]] && RUN=(runuser -u postgres --)
"${RUN[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
rm -rf "$DIR"
[[ "$(cat /tmp/warden-pg.current 2>/dev/null || true)" == "$DIR" ]] && rm -f /tmp/warden-pg.current
echo "stopped and removed $DIR" >&2
