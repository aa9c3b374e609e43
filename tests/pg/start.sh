#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster for warden's PostgresStore tests and prints the line
#   export WARDEN_PG_URL=postgres://warden@127.0.0.1:<port>/warden
# Use it as `eval "$(tests/pg/start.sh)"`; stop it with `tests/pg/stop.sh`.
#
# The cluster lives in a new directory under /tmp (its path is in /tmp/warden-pg.current), listens on
# 127.0.0.1 only, on a free port, with its socket in that directory; it trusts local connections (no
# password: a throwaway cluster for tests, never for real data). initdb refuses to run as root, so the
# cluster runs as the `postgres` user when started by root. Without the PostgreSQL 15 binaries, Debian's
# `postgresql` package is installed with apt-get.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
if [[ ! -x "$PG_BIN/initdb" ]]; then
    echo "start.sh: no $PG_BIN/initdb; installing Debian's postgresql package" >&2
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [[ -n "$found" ]] || { echo "start.sh: postgresql installed but no initdb found" >&2; exit 1; }
    PG_BIN="$found"
fi

DIR="$(mktemp -d /tmp/warden-pg.XXXXXX)"
RUN=()
if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres: "$DIR"
    RUN=(runuser -u postgres --)
fi

# A free port: a random one in 20000-59999 that nothing answers on (at most 50 tries).
PORT=""
for _ in $(seq 50); do
    candidate=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
        PORT="$candidate"
        break
    fi
done
[[ -n "$PORT" ]] || { echo "start.sh: no free port found" >&2; exit 1; }

"${RUN[@]}" "$PG_BIN/initdb" -D "$DIR/data" -U warden --auth=trust --no-sync -E UTF8 >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
"${RUN[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=on -c max_connections=200" start >&2 \
    || { cat "$DIR/server.log" >&2; exit 1; }
"${RUN[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U warden warden

echo "$DIR" >/tmp/warden-pg.current
echo "$PORT" >"$DIR/port"
URL="postgres://warden@127.0.0.1:$PORT/warden"
echo "$URL" >"$DIR/url"
echo "export WARDEN_PG_URL=$URL"
echo "export WARDEN_PG_DIR=$DIR"
