#!/usr/bin/env bash
# The main job: a whole local kaoping cluster on this machine. It builds kaoping, starts a
# throwaway PostgreSQL in a temp directory (or scores into KP_DSN when given), starts
# simulated department systems for the 70 units of Anshan 2015 and one kp-adapter per
# department (profiles in deploy/profiles/), plus kp-broker, kp-collector and kp-scorer with
# CURVE between them, keeps the departments publishing and revising, and prints the live
# ranking of every group every few seconds until Ctrl-C. Then it stops everything cleanly
# and says where the logs are.
#
#   statistics bureau  sql  monthly growth indicators (efficacy)          deploy/sim/department.sh
#   assessment office  sql  monthly reviews, bonus/deduction events, the
#                           yearly leader evaluation                       deploy/sim/department.sh
#   task tracking      sql  monthly on-time node completion (process)     deploy/sim/department.sh
#   public survey      sql  the yearly public evaluation                  deploy/sim/department.sh
#   e-supervision      sql  approval cases as on-time/overdue events      deploy/sim/esup.sh
#   finance bureau     csv  GBK budget-execution exports in a drop folder deploy/sim/finance.sh
#   audit bureau       http findings and their rectification (JSON API)   deploy/sim/audit.sh
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
. "$top/deploy/sim/department.sh"
. "$top/deploy/sim/esup.sh"
. "$top/deploy/sim/finance.sh"
. "$top/deploy/sim/audit.sh"

work=$(mktemp -d /tmp/kaoping-local.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/logs"
sim_pid=""

cleanup() {
    trap - INT TERM EXIT
    echo
    echo "stopping kaoping ..."
    if [ -n "$sim_pid" ]; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    sim_esup_stop >/dev/null 2>&1 || true
    kp_cluster_stop_all
    kp_pg_stop "$work/pg" >/dev/null 2>&1 || true
    echo "stopped. logs are in $work/logs"
}
trap cleanup INT TERM EXIT

kp_pg_start "$work/pg" "$(kp_pg_free_port)" >"$work/logs/postgres-start.log" 2>&1
dsn=${user_dsn:-$(kp_pg_dsn "$work/pg" kaoping)}
kp_cluster_init "$work" "$bdir" "$top" "$top/schemas/schemes/anshan-2015.yaml" "$dsn"

# The sql departments of deploy/sim/department.sql (the survey publishes no monthly leaf:
# only the yearly public evaluation, written by the loop below).
for d in stats office tasks; do
    sim_department_start "$work" "$d"
    kp_cluster_adapter_profile "$d" "$top/deploy/profiles/$d.yaml" SOURCE_DSN="$SIM_DEPT_DSN"
done
kp_pg_createdb "$work/pg" dept_survey
psql -X -q -v ON_ERROR_STOP=1 "$(sim_department_dsn survey)" -f "$top/deploy/sim/department.sql" >/dev/null
kp_cluster_adapter_profile survey "$top/deploy/profiles/office.yaml" \
    SOURCE_DSN="$(sim_department_dsn survey)" 'instance: survey' 'aid: survey' 'src: survey' \
    "spool: $work/spool/survey.db"
sim_esup_start "$work"
kp_cluster_adapter_profile esup "$top/deploy/profiles/esup.yaml" SOURCE_DSN="$SIM_ESUP_DSN"
sim_finance_start "$work"
kp_cluster_adapter_profile finance "$top/deploy/profiles/finance.yaml" SCHEME_FILE="$KP_SCHEME_FILE"
sim_audit_start "$work"
kp_cluster_adapter_profile audit "$top/deploy/profiles/audit.yaml" \
    AUDIT_URL="$AUDIT_URL" AUDIT_TOKEN_FILE="$AUDIT_TOKEN_FILE"
adapters=(stats office tasks survey esup finance audit)

kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
for a in "${adapters[@]}"; do kp_cluster_start "adapter-$a"; done

# All units of the scheme, for the yearly evaluations and the office's events.
"$bdir/kpctl/kpctl" scheme "$KP_SCHEME_FILE" | awk -F'\t' '$1 == "unit" { print $2 }' >"$work/units.txt"
unit_array="ARRAY[$(sed "s/.*/'&'/" "$work/units.txt" | paste -sd, -)]"

# The assessment office now and then commends or criticises a unit (加分/扣分 events), and
# publishes the yearly leader evaluation; the survey publishes the public evaluation; both
# revise them later in the year.
office_events() { # MONTH
    psql -X -q -v ON_ERROR_STOP=1 "$(sim_department_dsn office)" -c "
        INSERT INTO indicator_value (unit_code, indicator_code, period, value)
        SELECT u, k, '$1', 1
          FROM (SELECT u FROM unnest($unit_array) u ORDER BY random() LIMIT 3) x,
               (VALUES ('commendation'), ('criticism')) AS kinds(k)
         WHERE random() < 0.5
        ON CONFLICT DO NOTHING"
}
yearly() { # DEPT LEAF
    psql -X -q -v ON_ERROR_STOP=1 "$(sim_department_dsn "$1")" -c "
        INSERT INTO indicator_value (unit_code, indicator_code, period, value)
        SELECT u, '$2', '2015', round((70 + random() * 28)::numeric, 1) FROM unnest($unit_array) u
        ON CONFLICT (unit_code, indicator_code, period) DO UPDATE
           SET value = least(100, round((excluded.value + 1)::numeric, 1))"
}

simulate() {
    local month=1 p
    while :; do
        p=$(printf '2015-%02d' "$month")
        for d in stats office tasks; do sim_department_step "$d" "$p" || true; done
        office_events "$p" || true
        if [ "$month" -eq 1 ] || [ "$month" -eq 6 ] || [ "$month" -eq 12 ]; then
            yearly office leader || true
            yearly survey public || true
        fi
        sim_finance_step "$p" >/dev/null || true
        sim_audit_step "$month" >/dev/null || true
        SIM_ESUP_CASES_PER_DAY=${SIM_ESUP_CASES_PER_DAY:-300} sim_esup_step "$p" || true
        [ "$month" -lt 12 ] && month=$((month + 1))
        sleep "$refresh"
    done
}
simulate >>"$work/logs/simulator.log" 2>&1 &
sim_pid=$!

# For operations staff: the cluster description for kpctl status and a Prometheus config
# scraping every daemon (prometheus --config.file=... shows the pipeline-health rules).
kp_cluster_prometheus_config "$work/etc/prometheus.yml"
echo "kaoping local cluster in $work (logs in $work/logs); Ctrl-C to stop"
echo "  pipeline health: KP_DSN='$dsn' $bdir/kpctl/kpctl status --cluster $KP_CLUSTER"
echo "  Prometheus:      prometheus --config.file=$work/etc/prometheus.yml"
started=$(date +%s)
while :; do
    sleep "$refresh"
    out=$(KP_DSN=$dsn "$bdir/kpctl/kpctl" scores "$KP_SCHEME" 2>&1 || true)
    year=$(KP_DSN=$dsn "$bdir/kpctl/kpctl" scores "$KP_SCHEME" --period 2015 --group g1 2>&1 || true)
    alerts=$(KP_DSN=$dsn "$bdir/kpctl/kpctl" alerts "$KP_SCHEME" 2>&1 | head -n 12 || true)
    [ -t 1 ] && printf '\033[2J\033[H'
    echo "$(date '+%H:%M:%S')  live ranking (Ctrl-C to stop; logs in $work/logs)"
    echo "$out"
    echo
    echo "the year so far, all parts (result, process, leader, public, bonus/deductions):"
    echo "$year"
    echo
    echo "firing alerts:"
    echo "$alerts"
    echo
    echo "pipeline health: KP_DSN='$dsn' $bdir/kpctl/kpctl status --cluster $KP_CLUSTER"
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
