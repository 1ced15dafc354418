#!/usr/bin/env bash
# Scenario: `kpctl status` on a running local cluster (issue 8). With every daemon up it
# shows each one up and ready, the adapter's last ack, spool and rejections of the last hour,
# and the scheme's last update, and exits 0. After `kill -9` of the broker it shows the broker
# DOWN (and the collector no longer ready) and exits non-zero; once the broker is back it
# exits 0 again. A missing cluster file is a usage error (2); --help works.
. "$(dirname "$0")/lib.sh"
kpctl=$KP_BUILD_DIR/kpctl/kpctl
status() { "$kpctl" status --cluster "$KP_CLUSTER" --dsn "$DSN" "$@"; }

# wait_status WANT_RC SECONDS: until `kpctl status` exits WANT_RC; leaves its output in $out
wait_status() {
    local want=$1 secs=$2 i rc
    for i in $(seq 1 $((secs * 2))); do
        rc=0
        out=$(status 2>&1) || rc=$?
        [ "$rc" -eq "$want" ] && return 0
        sleep 0.5
    done
    echo "kpctl status did not exit $want within ${secs}s (last $rc):" >&2
    echo "$out" >&2
    return 1
}

check "--help" "$("$kpctl" status --help | head -n 1)" \
    "usage: kpctl status [--cluster FILE] [--dsn DSN] [--stale SECONDS] [--timeout SECONDS]"
rc=0
"$kpctl" status --cluster "$it_work/no-such.yaml" >/dev/null 2>&1 || rc=$?
check "missing cluster file is a usage error" "$rc" 2
rc=0
"$kpctl" status --cluster "$KP_CLUSTER" --bogus 1 >/dev/null 2>&1 || rc=$?
check "unknown option is a usage error" "$rc" 2

qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES
  ('AS-HC','gdp_growth','2015-03',12), ('AS-TA','gdp_growth','2015-03',9),
  ('NO-SUCH-UNIT','gdp_growth','2015-03',7)"
kp_cluster_adapter stats stats "$SDSN" "$KP_SOURCE_DIR/deploy/sim/department_query.sql"
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_cluster_start adapter-stats
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation" 2 60
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_rejection" 1 30

wait_status 0 30
echo "$out"
line() { printf '%s\n' "$out" | grep -E "^$1 " | head -n 1; }
for d in broker collector scorer adapter-stats; do
    check "$d up and ready" "$(line "$d" | awk '{print $3, $4}')" "up ready"
done
check "the collector counts one adapter connection" \
    "$(line collector | grep -o 'adapters [0-9]*')" "adapters 1"
check "the broker has a live scheme" "$(line broker | grep -o 'schemes live [0-9]*')" "schemes live 1"
adapter=$(printf '%s\n' "$out" | grep -A20 '^ADAPTER' | grep '^adapter-stats ')
check "adapter row: aid, spool 0, 1 rejection, ok" \
    "$(echo "$adapter" | awk '{print $2, $4, $8, $9}')" "stats 0 1 ok"
check "adapter row: last ack is recent" "$(echo "$adapter" | awk '{print $3}' | grep -cE '^(<1s|[0-9]+s)$')" 1
check "scheme row: anshan-2015, period 2015-03, updated, 1 rejection" \
    "$(printf '%s\n' "$out" | grep '^anshan-2015 ' | grep -oE '2015-03 .* ago +1$' | wc -l)" 1
check "status line" "$(printf '%s\n' "$out" | tail -n 1)" "status: OK"

# The broker dies.
kp_cluster_kill broker KILL
wait_status 1 20
echo "$out"
check "broker shown down" "$(line broker | awk '{print $3}')" "DOWN"
check "collector shown not ready (no broker)" "$(line collector | awk '{print $3, $4}')" "up UNREADY"
check "the problem names the broker" "$(printf '%s\n' "$out" | grep -c '^  broker: down')" 1
rc=0
status >/dev/null 2>&1 || rc=$?
check "exit code with the broker down" "$rc" 1

# It comes back: everything reconnects by itself.
kp_cluster_start broker
wait_status 0 30
check "all up again" "$(printf '%s\n' "$out" | tail -n 1)" "status: OK"

# The scorer dies while the bureau publishes: the batch waits in the spool; past --stale the
# adapter is STALE, the broker names the scheme without a scorer.
kp_cluster_kill scorer KILL
qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES ('AS-XY','gdp_growth','2015-03',8)"
sleep 3
rc=0
out=$(status --stale 1 2>&1) || rc=$?
echo "$out"
check "exit code with a stale spool" "$rc" 1
check "adapter shown stale" "$(printf '%s\n' "$out" | grep -A20 '^ADAPTER' | grep '^adapter-stats ' | grep -c 'STALE: spool waiting')" 1
check "the scheme without a scorer is named" \
    "$(printf '%s\n' "$out" | grep -c '^  broker: no live scorer serves scheme anshan-2015')" 1
kp_cluster_start scorer
wait_status 0 30
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation" 3 30

# The database goes away: status says so and fails.
rc=0
out=$("$kpctl" status --cluster "$KP_CLUSTER" --dsn "host=127.0.0.1 port=1 dbname=x connect_timeout=2" 2>&1) || rc=$?
check "unreachable database fails the status" "$rc" 1
check "unreachable database shown" "$(printf '%s\n' "$out" | grep -c '^database: UNREACHABLE')" 1
echo "kpctl_status: all checks passed"
