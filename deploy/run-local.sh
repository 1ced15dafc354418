#!/usr/bin/env bash
# The main job: a whole local kaoping cluster on this machine. It builds kaoping, starts a
# throwaway PostgreSQL in a temp directory (or uses KP_DSN when given), creates simulated
# department databases (statistics bureau, assessment office, task tracking) for the 70
# units of Anshan 2015, starts kp-broker, kp-collector, kp-scorer and one kp-adapter per
# department, keeps publishing and revising monthly indicators, and prints the live ranking
# of every group every few seconds until Ctrl-C. Then it stops everything cleanly and says
# where the logs are.
#
#   deploy/run-local.sh                       until Ctrl-C
#   KP_RUN_SECONDS=60 deploy/run-local.sh     stop by itself after 60 s
#   KP_DSN='host=... dbname=...' deploy/run-local.sh
#                                             score into an existing database (the simulated
#                                             departments still get a throwaway cluster)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=${KP_BUILD_DIR:-$top/build}
refresh=${KP_REFRESH_SECONDS:-5}
run_seconds=${KP_RUN_SECONDS:-0}
user_dsn=${KP_DSN:-}

"$top/deploy/build.sh" "$bdir" >/dev/null
. "$top/tests/harness/pg.sh"
. "$top/tests/harness/cluster.sh"

work=$(mktemp -d /tmp/kaoping-local.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/logs"
sim_pid=""

cleanup() {
    trap - INT TERM EXIT
    echo
    echo "stopping kaoping ..."
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    kp_cluster_stop_all
    kp_pg_stop "$work/pg" >/dev/null 2>&1 || true
    echo "stopped. logs are in $work/logs"
}
trap cleanup INT TERM EXIT

kp_pg_start "$work/pg" "$(kp_pg_free_port)" >"$work/logs/postgres-start.log" 2>&1
dsn=${user_dsn:-$(kp_pg_dsn "$work/pg" kaoping)}
kp_cluster_init "$work" "$bdir" "$top" "$top/schemas/schemes/anshan-2015.yaml" "$dsn"

# The simulated department systems, one database each (deploy/sim/department.sql): the
# statistics bureau (src stats), the assessment office's review platform (src office) and
# its task-node tracking (src tasks). Each publishes the leaves deploy/sim/targets.tsv gives
# it, for every unit of the scheme the leaf applies to.
departments=(stats office tasks)
"$bdir/kpctl/kpctl" scheme "$KP_SCHEME_FILE" >"$work/scheme.tsv"
for d in "${departments[@]}"; do
    kp_pg_createdb "$work/pg" "dept_$d"
    ddsn=$(kp_pg_dsn "$work/pg" "dept_$d")
    psql -X -q -v ON_ERROR_STOP=1 "$ddsn" -f "$top/deploy/sim/department.sql" >/dev/null
    awk -F'\t' -v d="$d" 'NR == FNR { if ($1 == d) { mean[$2] = $3; sd[$2] = $4 }; next }
        $1 == "cell" && ($3 in mean) { printf "%s\t%s\t%s\t%s\n", $2, $3, mean[$3], sd[$3] }' \
        "$top/deploy/sim/targets.tsv" "$work/scheme.tsv" >"$work/targets-$d.tsv"
    psql -X -q -v ON_ERROR_STOP=1 "$ddsn" -c "\\copy sim_target FROM '$work/targets-$d.tsv'"
    kp_cluster_adapter "$d" "$d" "$ddsn" "$top/deploy/sim/department_query.sql"
done

kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
for d in "${departments[@]}"; do kp_cluster_start "adapter-$d"; done

# Every step each department publishes the next month and revises a few earlier rows; the
# statistics bureau now and then writes a row for a unit the scheme does not know (it ends
# as an unknown_unit rejection, visible in kp_rejection).
simulate() {
    local month=1 p d bad
    while :; do
        p=$(printf '2015-%02d' "$month")
        for d in "${departments[@]}"; do
            bad=false
            [ "$d" = stats ] && [ $((month % 3)) -eq 0 ] && bad=true
            psql -X -q -t -v ON_ERROR_STOP=1 "$(kp_pg_dsn "$work/pg" "dept_$d")" \
                -c "SELECT sim_publish('$p', 5, $bad)" >>"$work/logs/simulator.log" 2>&1 || true
        done
        [ "$month" -lt 12 ] && month=$((month + 1))
        sleep "$refresh"
    done
}
simulate &
sim_pid=$!

echo "kaoping local cluster in $work (logs in $work/logs); Ctrl-C to stop"
started=$(date +%s)
while :; do
    sleep "$refresh"
    out=$(KP_DSN=$dsn "$bdir/kpctl/kpctl" scores "$KP_SCHEME" 2>&1 || true)
    [ -t 1 ] && printf '\033[2J\033[H'
    echo "$(date '+%H:%M:%S')  live ranking (Ctrl-C to stop)"
    echo "$out"
    for f in "$work"/pids/*; do
        if ! kp_cluster_alive "$(basename "$f")"; then
            echo "$(basename "$f") exited; see $work/logs" >&2
            exit 1
        fi
    done
    if [ "$run_seconds" -gt 0 ] && [ $(($(date +%s) - started)) -ge "$run_seconds" ]; then
        break
    fi
done
