#!/usr/bin/env bash
# Runs loadtest/k6/fanout.js against a fresh `switchboard serve` (its own
# database and Redis prefix, abuse limits off, as `loadtest -spawn -loop
# closed` does: its one sender sends 100 messages a second),
# then stops it and drops the database. Needs bin/switchboard and k6 on PATH
# or in bin/ (`make k6` provides both). Extra arguments go to k6; the
# scenario's size comes from SUBS, ACCOUNTS, INTERVAL_MS, DURATION_S.
set -euo pipefail
cd "$(dirname "$0")/../.."
k6=$(command -v k6 || echo bin/k6)
run="k6_$(date +%s)_$$"
pg=${K6_PG_URL:-postgres://postgres@127.0.0.1:5432}
port=$((10000 + RANDOM % 20000))
DATABASE_URL="$pg/$run?sslmode=disable" REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0} \
SWITCHBOARD_REDIS_PREFIX="$run:" SWITCHBOARD_JWT_SECRET="k6-secret-k6-secret-k6-secret-k6" \
SWITCHBOARD_RATE_LIMIT=1000000 SWITCHBOARD_RATE_BURST=1000000 SWITCHBOARD_HTTP_RATE_LIMIT=0 \
SWITCHBOARD_AUTH_RATE_LIMIT=0 SWITCHBOARD_MAX_CONNS_PER_USER=1000000 \
SWITCHBOARD_LOG_LEVEL=warn bin/switchboard serve --addr "127.0.0.1:$port" >/dev/null &
server=$!
cleanup() {
	kill "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
	psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $run" >/dev/null || true
	redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379/0}" --scan --pattern "$run:*" | xargs -r redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379/0}" del >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
	curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
	sleep 0.1
done
"$k6" run -e BASE="http://127.0.0.1:$port" "$@" loadtest/k6/fanout.js
