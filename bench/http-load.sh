#!/usr/bin/env bash
# HTTP load on a real `custodian serve` on 127.0.0.1, with wrk, against two ceilings
# measured in the same run on the same box:
#   - bare:    GET /healthz of the same server (axum, no auth, no database): the HTTP ceiling;
#   - read:    GET /v1/records/{id} (token authentication, purpose check, decryption, and an
#              audit entry committed durably before the answer: an audited read is a write);
#   - write:   POST /v1/subjects/{id}/records (validation, encryption, audit, durable commit);
#   - raw SQLite inserts at 64 rows per commit (WAL, synchronous=FULL): the disk's ceiling
#     for durable rows (custodian-bench raw-sqlite).
# Goals (issue 6): audited reads >= 25% of bare; durable writes >= 50% of raw SQLite 64/commit.
#
# Usage:  bench/http-load.sh [seconds per endpoint, default 10] [connections, default 64] [rounds, default 1]
#         With several rounds the three endpoints run again in each (same server, same data), and the
#         ratios are printed per round and as their median: on a shared 2-core box the bare endpoint alone
#         moves by +-15 % between runs, so one round's ratio is mostly that noise.
# Needs:  wrk (apt-get install -y wrk), curl, python3, and release builds of both binaries:
#         cargo build --release -p custodian -p custodian-bench
set -euo pipefail

SECS=${1:-10}
CONNS=${2:-64}
ROUNDS=${3:-1}
case "$ROUNDS" in ''|*[!0-9]*|0) echo "http-load: rounds must be a positive number, not '$ROUNDS'" >&2; exit 2 ;; esac
THREADS=${WRK_THREADS:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CUSTODIAN_BIN:-$ROOT/target/release/custodian}
BENCH=${CUSTODIAN_BENCH_BIN:-$ROOT/target/release/custodian-bench}
# The server reads every CUSTODIAN_* variable as a setting and refuses unknown ones.
unset CUSTODIAN_BIN CUSTODIAN_BENCH_BIN

for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "http-load: $tool is missing (wrk: apt-get install -y wrk)" >&2; exit 2; }
done
for b in "$BIN" "$BENCH"; do
    [ -x "$b" ] || { echo "http-load: $b is missing: cargo build --release -p custodian -p custodian-bench" >&2; exit 2; }
done

# Same disk as the other benchmarks: a folder under the working directory.
WORK=$(mktemp -d "$PWD/http-load.XXXXXX")
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

C() { (cd "$WORK" && "$BIN" "$@"); }
C init >/dev/null
OPERATOR=$(C token create --role operator_admin --days 1 --label http-load | tail -n1)

(cd "$WORK" && exec "$BIN" serve --listen 127.0.0.1:0) >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 1 200); do
    BASE=$(sed -n 's/.* listening on \(http[^ ]*\).*/\1/p' "$WORK/serve.out" | head -n1)
    [ -n "$BASE" ] && break
    sleep 0.05
done
[ -n "${BASE:-}" ] || { echo "http-load: the server did not start:"; cat "$WORK/serve.err"; exit 1; }

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
post() { # token, path, body, [purpose]
    curl -sf -X POST "$BASE$2" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
        ${4:+-H "Custodian-Purpose: $4"} --data "$3"
}
CTL=$(post "$OPERATOR" /v1/controllers '{"name":"Load SAS","region":"osc-fr1","agreement_effective":"2026-01-01","governing_law":"FR"}' | json "['id']")
ADMIN=$(post "$OPERATOR" /v1/tokens "{\"role\":\"controller_admin\",\"controller\":\"$CTL\",\"label\":\"load admin\",\"expires_in_seconds\":86400}" | json "['secret']")
post "$ADMIN" /v1/purposes '{"name":"support","description":"Answer support requests","lawful_basis":"contract","categories":["user"],"operations":["collection","recording","retrieval","consultation"],"retention_days":365}' >/dev/null
APP=$(post "$ADMIN" /v1/tokens '{"role":"controller_app","label":"load app","expires_in_seconds":86400}' | json "['secret']")
CREATED=$(post "$APP" /v1/subjects '{"category":"customer","record":{"fields":{"name":{"category":"user.name","value":"Ada Lovelace"},"email":{"category":"user.contact.email","value":"ada@example.org"}},"source":"signup form"}}' support)
SUBJECT=$(echo "$CREATED" | json "['id']")
RECORD=$(echo "$CREATED" | json "['record']")

cat >"$WORK/read.lua" <<EOF
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $APP"
wrk.headers["Custodian-Purpose"] = "support"
EOF
cat >"$WORK/write.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $APP"
wrk.headers["Custodian-Purpose"] = "support"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"fields":{"note":{"category":"user.content.private","value":"called about the invoice of last month, wants a copy by mail"}},"source":"support call"}'
EOF
# The server's CPU time so far (user + system, in clock ticks): throughput on a shared
# 2-core box moves with whatever else runs, the server's CPU time per request much less.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
TCK=$(getconf CLK_TCK)

run() { # name, path, [script]
    local out before after
    before=$(cpu_ticks)
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency ${3:+-s "$3"} "$BASE$2")
    after=$(cpu_ticks)
    local rps p50 p99 non2xx requests cpu
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    cpu=$(awk -v t="$((after - before))" -v n="$requests" -v hz="$TCK" 'BEGIN {printf "%.0f", t / hz / n * 1e6}')
    printf '  %-52s %10s req/s   p50 %-9s p99 %-9s server CPU %5s µs/req%s\n' "$1" "$rps" "$p50" "$p99" "$cpu" "${non2xx:+   NON-2XX: $non2xx}"
    eval "RPS_$4=$rps"
}

echo "http-load: $CONNS connections, $THREADS wrk threads, ${SECS} s per endpoint, $ROUNDS round(s), server $BASE"
echo "  machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
RESULTS=()
for round in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && echo "  round $round"
    run "bare      GET /healthz" /healthz "" BARE
    run "read      GET /v1/records/{id} (audited)" "/v1/records/$RECORD" "$WORK/read.lua" READ
    run "write     POST /v1/subjects/{id}/records (durable)" "/v1/subjects/$SUBJECT/records" "$WORK/write.lua" WRITE
    RAW=$(cd "$WORK" && "$BENCH" raw-sqlite --rows-per-commit 64 --seconds "$SECS")
    RAW_RPS=$(echo "$RAW" | sed -n 's/.*: \([0-9]*\) rows\/s.*/\1/p')
    printf '  %-52s %10s rows/s\n' "raw SQLite, 64 rows per commit (same disk)" "$RAW_RPS"
    RESULTS+=("$RPS_BARE $RPS_READ $RPS_WRITE $RAW_RPS")
done
python3 - "${RESULTS[@]}" <<'EOF'
import statistics, sys
rounds = [list(map(float, r.split())) for r in sys.argv[1:]]
reads = [read / bare * 100 for bare, read, _, _ in rounds]
writes = [write / raw * 100 for _, _, write, raw in rounds]
def show(name, values, goal):
    each = " / ".join(f"{v:.1f}" for v in values)
    median = statistics.median(values)
    detail = f"   (rounds: {each})" if len(values) > 1 else ""
    print(f"  {name:<33} {median:6.1f}%   (goal >= {goal}%){detail}")
show("audited read / bare:", reads, 25)
show("durable write / raw SQLite 64:", writes, 50)
EOF
echo "  load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
# The audit trail of the run must verify.
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
C verify | tail -n2 | sed 's/^/  /'
