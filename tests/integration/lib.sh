# shellcheck shell=bash
# Common set-up of the integration scenarios: a throwaway PostgreSQL, one simulated
# department database (deploy/sim/department.sql) and the cluster functions. Not a test
# itself (CTest runs tests/integration/*.sh except this file).
set -euo pipefail
: "${KP_BUILD_DIR:?set by CTest}" "${KP_SOURCE_DIR:?set by CTest}"
. "$KP_SOURCE_DIR/tests/harness/pg.sh"
. "$KP_SOURCE_DIR/tests/harness/cluster.sh"

it_work=$(mktemp -d /tmp/kp-it.XXXXXX)
export KP_PORTS_FILE=$it_work/admin-ports # no port drawn twice, PostgreSQL's included
chmod 755 "$it_work"

it_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    kp_cluster_stop_all 2>/dev/null || true
    if [ $rc -ne 0 ]; then
        echo "---- FAILED ($rc); daemon logs (tail):"
        for f in "$it_work"/logs/*.log; do
            [ -e "$f" ] || continue
            echo "== $f"
            tail -n 40 "$f"
        done
    fi
    kp_pg_destroy "$it_work/pg" >/dev/null 2>&1 || true
    [ $rc -eq 0 ] && rm -rf "$it_work"
    exit $rc
}
trap it_cleanup EXIT INT TERM

kp_pg_start "$it_work/pg" "$(kp_pg_free_port)" >/dev/null
DSN=$(kp_pg_dsn "$it_work/pg" kaoping)
kp_pg_createdb "$it_work/pg" dept_stats
SDSN=$(kp_pg_dsn "$it_work/pg" dept_stats)
psql -X -q -v ON_ERROR_STOP=1 "$SDSN" -f "$KP_SOURCE_DIR/deploy/sim/department.sql" >/dev/null
kp_cluster_init "$it_work" "$KP_BUILD_DIR" "$KP_SOURCE_DIR" \
    "$KP_SOURCE_DIR/schemas/schemes/anshan-2015.yaml" "$DSN"

q() { psql -X -tA -v ON_ERROR_STOP=1 "$DSN" -c "$1"; }
qs() { psql -X -tA -v ON_ERROR_STOP=1 "$SDSN" -c "$1"; }

# check NAME GOT WANT
check() {
    if [ "$2" = "$3" ]; then
        echo "ok: $1"
    else
        echo "FAIL: $1: got '$2', want '$3'" >&2
        exit 1
    fi
}
