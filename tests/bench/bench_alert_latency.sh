#!/usr/bin/env bash
# bench_alert_latency.sh [-n N]: the latency from sending a triggering observation to the alert
# being visible in Alertmanager (issue 7; target p99 <= 1 s). Starts a throwaway PostgreSQL, a
# real prometheus-alertmanager (deploy/alertmanager/alertmanager.yml), kp-broker, kp-collector
# and kp-scorer on the Anshan 2015 scheme (alerts.alertmanager_url set), then runs
# bench_alert_latency run: N trials, each one observation that takes a department's monthly
# total under 60 (rule total_low, red) and is timed until GET /api/v2/alerts shows the alert.
# Prints a table (p50/p90/p99/max of the ack and of the visibility); never asserts time.
# Needs KP_BUILD_DIR and KP_SOURCE_DIR (CTest sets them; bench.alert_latency_smoke runs -n 5).
set -euo pipefail
: "${KP_BUILD_DIR:?set KP_BUILD_DIR to the build directory}" "${KP_SOURCE_DIR:?set KP_SOURCE_DIR}"
N=200
while [ $# -gt 0 ]; do
    case $1 in
    -n) N=$2; shift 2 ;;
    *) echo "usage: $0 [-n TRIALS]" >&2; exit 2 ;;
    esac
done
AM_BIN=${KP_ALERTMANAGER:-/usr/bin/prometheus-alertmanager}
[ -x "$AM_BIN" ] || { echo "$AM_BIN not found (deploy/install-deps.sh installs it)" >&2; exit 1; }
export KP_INSECURE=1 # the benchmark's client speaks plain TCP to the collector
. "$KP_SOURCE_DIR/tests/harness/pg.sh"
. "$KP_SOURCE_DIR/tests/harness/cluster.sh"

work=$(mktemp -d /tmp/kp-bench-alert.XXXXXX)
chmod 755 "$work" # the postgres user runs the throwaway cluster under it
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    kp_cluster_stop_all 2>/dev/null || true
    if [ $rc -ne 0 ]; then
        for f in "$work"/logs/*.log; do
            [ -e "$f" ] && { echo "== $f"; tail -n 30 "$f"; }
        done
    fi
    kp_pg_destroy "$work/pg" >/dev/null 2>&1 || true
    [ $rc -eq 0 ] && rm -rf "$work"
    exit $rc
}
trap cleanup EXIT INT TERM

kp_pg_start "$work/pg" "$(kp_pg_free_port)" >/dev/null
DSN=$(kp_pg_dsn "$work/pg" kaoping)
SCHEME_FILE=$KP_SOURCE_DIR/schemas/schemes/anshan-2015.yaml
kp_cluster_init "$work" "$KP_BUILD_DIR" "$KP_SOURCE_DIR" "$SCHEME_FILE" "$DSN"
AM_PORT=$(kp_pg_free_port)
AM=http://127.0.0.1:$AM_PORT
cat >>"$KP_WORK/etc/scorer.yaml" <<YAML
log_level: warn
alerts:
  alertmanager_url: $AM
YAML
mkdir -p "$work/am"
"$AM_BIN" --config.file="$KP_SOURCE_DIR/deploy/alertmanager/alertmanager.yml" \
    --storage.path="$work/am" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address= >>"$work/logs/alertmanager.log" 2>&1 &
echo $! >"$KP_WORK/pids/alertmanager"
for i in $(seq 1 150); do
    curl -fsS "$AM/-/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
for i in $(seq 1 300); do
    curl -fsS "http://$(kp_cluster_admin scorer)/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
sleep 0.5 # the scorer's registration reaches the broker
"$KP_BUILD_DIR/tests/bench/bench_alert_latency" run --collector "tcp://127.0.0.1:$KP_COL_PORT" \
    --am "$AM" --scheme-file "$SCHEME_FILE" --group g4 -n "$N"
