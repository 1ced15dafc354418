# shellcheck shell=bash
#
# department.sh: the simulated department systems of the main job that publish monthly
# indicator values per unit (deploy/sim/department.sql): the statistics bureau (stats), the
# assessment office's review platform (office) and its task-node tracking (tasks). Which
# leaves each one publishes, around which values, is deploy/sim/targets.tsv; for every unit
# the scheme applies the leaf to. Source it after tests/harness/pg.sh and
# tests/harness/cluster.sh; kp_cluster_init must have run (KP_BIN, KP_SCHEME_FILE). It
# defines functions only.
#
#   sim_department_start WORK NAME
#       create the database dept_NAME in the PostgreSQL cluster of WORK/pg (pg.sh), load
#       department.sql and NAME's targets; prints nothing, sets SIM_DEPT_DSN (also
#       `sim_department_dsn NAME`). A second call with the same WORK and NAME reuses it.
#   sim_department_step NAME MONTH
#       publish MONTH (YYYY-MM, or 1-12 of the scheme's year) for every target, revise 5
#       earlier rows; stats also writes a row for a unit the scheme does not know every third
#       month (an unknown_unit rejection)
#   sim_department_dsn NAME     print dept_NAME's DSN
#
# With the adapter profiles deploy/profiles/{stats,office,tasks}.yaml:
#   for d in stats office tasks; do
#       sim_department_start "$work" "$d"
#       kp_cluster_adapter_profile "$d" "$top/deploy/profiles/$d.yaml" SOURCE_DSN="$SIM_DEPT_DSN"
#       kp_cluster_start "adapter-$d"
#   done
#   sim_department_step stats 2015-01

SIM_DEPT_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

sim_department_start() {
    local work=$1 name=$2 exists targets
    if [ -z "$work" ] || [ -z "$name" ] || [ ! -d "$work/pg" ]; then
        echo "sim_department_start: usage: sim_department_start WORK NAME (WORK/pg holds the cluster)" >&2
        return 2
    fi
    if [ -z "${KP_BIN:-}" ] || [ -z "${KP_SCHEME_FILE:-}" ]; then
        echo "sim_department_start: run kp_cluster_init first (KP_BIN, KP_SCHEME_FILE)" >&2
        return 2
    fi
    case $name in *[!a-z0-9_]* | "") echo "sim_department_start: bad NAME \"$name\"" >&2; return 2 ;; esac
    SIM_DEPT_WORK=$work
    SIM_DEPT_YEAR=$(sed -n 's/^year: *\([0-9]\{4\}\).*/\1/p' "$KP_SCHEME_FILE" | head -n 1)
    SIM_DEPT_DSN=$(kp_pg_dsn "$work/pg" "dept_$name") || return 1
    exists=$(kp_pg_psql "$work/pg" -tA -c "SELECT 1 FROM pg_database WHERE datname = 'dept_$name'") || return 1
    [ "$exists" = 1 ] && return 0
    kp_pg_createdb "$work/pg" "dept_$name" || return 1
    psql -X -q -v ON_ERROR_STOP=1 "$SIM_DEPT_DSN" -f "$SIM_DEPT_HERE/department.sql" >/dev/null || return 1
    targets=$(mktemp "${TMPDIR:-/tmp}/kp-dept-targets.XXXXXX")
    chmod 644 "$targets"
    if ! "$KP_BIN/kpctl/kpctl" scheme "$KP_SCHEME_FILE" |
        awk -F'\t' -v d="$name" 'NR == FNR { if ($1 == d) { mean[$2] = $3; sd[$2] = $4 }; next }
            $1 == "cell" && ($3 in mean) { printf "%s\t%s\t%s\t%s\n", $2, $3, mean[$3], sd[$3] }' \
            "$SIM_DEPT_HERE/targets.tsv" - >"$targets"; then
        rm -f "$targets"
        echo "sim_department_start: kpctl scheme $KP_SCHEME_FILE failed" >&2
        return 1
    fi
    if [ ! -s "$targets" ]; then
        rm -f "$targets"
        echo "sim_department_start: targets.tsv gives $name no leaf of $KP_SCHEME_FILE" >&2
        return 1
    fi
    psql -X -q -v ON_ERROR_STOP=1 "$SIM_DEPT_DSN" -c "\\copy sim_target FROM '$targets'"
    local rc=$?
    rm -f "$targets"
    return $rc
}

sim_department_dsn() {
    kp_pg_dsn "${SIM_DEPT_WORK:?run sim_department_start first}/pg" "dept_$1"
}

sim_department_step() {
    local name=$1 month=$2 bad=false m
    if [ -z "${SIM_DEPT_WORK:-}" ]; then
        echo "sim_department_step: run sim_department_start first" >&2
        return 2
    fi
    case $month in
    [0-9] | [0-9][0-9]) month=$(printf '%s-%02d' "${SIM_DEPT_YEAR:-2015}" "$((10#$month))") ;;
    [0-9][0-9][0-9][0-9]-[0-9][0-9]) ;;
    *)
        echo "sim_department_step: MONTH must be YYYY-MM or 1-12, not \"$month\"" >&2
        return 2
        ;;
    esac
    m=$((10#${month#*-}))
    [ "$name" = stats ] && [ $((m % 3)) -eq 0 ] && bad=true
    psql -X -q -t -v ON_ERROR_STOP=1 "$(sim_department_dsn "$name")" \
        -c "SELECT sim_publish('$month', 5, $bad)" >/dev/null
}
