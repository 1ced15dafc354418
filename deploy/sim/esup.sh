# shellcheck shell=bash
#
# esup.sh: the simulated e-supervision system (电子监察, deploy/sim/esup.sql) of the local
# cluster: thousands of administrative-approval cases a simulated day across the units the
# scheme's approval_ontime leaf applies to, some completing late, some with one stage over
# its limit, some stage records arriving days late (revisions), some transactions committing
# late. Source it after tests/harness/pg.sh and tests/harness/cluster.sh; kp_cluster_init
# must have run (KP_BIN, KP_SCHEME_FILE). It defines functions only.
#
#   sim_esup_start WORK
#       create the database dept_esup in the PostgreSQL cluster of WORK/pg (pg.sh), load
#       esup.sql and the units of the scheme's `cell UNIT approval_ontime` lines
#       (kpctl scheme); sets SIM_ESUP_DSN. A second call with the same WORK reuses the
#       database.
#   sim_esup_step MONTH [CASES_PER_DAY]
#       simulate one month (YYYY-MM, or 1-12 of the scheme's year), one transaction per day;
#       CASES_PER_DAY defaults to $SIM_ESUP_CASES_PER_DAY or 2000. Blocks until done (about
#       10 s for 2000 a day); run it in the background to keep a loop going. With
#       SIM_ESUP_DAY_PAUSE=SECONDS it sleeps that long after each simulated day (a steadier
#       stream: a month over the refresh period of deploy/run-local.sh, say).
#   sim_esup_stop
#       cancel the simulator's transaction in progress (safe from a cleanup trap); a step
#       running in the background is the caller's job to kill first. The database stays.
#
# With the adapter profile deploy/profiles/esup.yaml:
#   sim_esup_start "$work"
#   kp_cluster_adapter_profile esup "$top/deploy/profiles/esup.yaml" SOURCE_DSN="$SIM_ESUP_DSN"
#   kp_cluster_start adapter-esup
#   sim_esup_step 2015-01

SIM_ESUP_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SIM_ESUP_APP=kaoping-sim-esup

sim_esup_start() {
    local work=$1 exists units
    if [ -z "$work" ] || [ ! -d "$work/pg" ]; then
        echo "sim_esup_start: usage: sim_esup_start WORK (WORK/pg holds the cluster)" >&2
        return 2
    fi
    if [ -z "${KP_BIN:-}" ] || [ -z "${KP_SCHEME_FILE:-}" ]; then
        echo "sim_esup_start: run kp_cluster_init first (KP_BIN, KP_SCHEME_FILE)" >&2
        return 2
    fi
    SIM_ESUP_WORK=$work
    SIM_ESUP_DSN=$(kp_pg_dsn "$work/pg" dept_esup) || return 1
    SIM_ESUP_YEAR=$(sed -n 's/^year: *\([0-9]\{4\}\).*/\1/p' "$KP_SCHEME_FILE" | head -n 1)
    exists=$(kp_pg_psql "$work/pg" -tA -c "SELECT 1 FROM pg_database WHERE datname = 'dept_esup'") || return 1
    if [ "$exists" = 1 ]; then
        return 0
    fi
    kp_pg_createdb "$work/pg" dept_esup || return 1
    psql -X -q -v ON_ERROR_STOP=1 "$SIM_ESUP_DSN" -f "$SIM_ESUP_HERE/esup.sql" >/dev/null || return 1
    units=$(mktemp "${TMPDIR:-/tmp}/kp-esup-units.XXXXXX")
    chmod 644 "$units"
    if ! "$KP_BIN/kpctl/kpctl" scheme "$KP_SCHEME_FILE" |
        awk -F'\t' '$1 == "cell" && $3 == "approval_ontime" { print $2 }' >"$units"; then
        rm -f "$units"
        echo "sim_esup_start: kpctl scheme $KP_SCHEME_FILE failed" >&2
        return 1
    fi
    if [ ! -s "$units" ]; then
        rm -f "$units"
        echo "sim_esup_start: $KP_SCHEME_FILE has no approval_ontime cells" >&2
        return 1
    fi
    psql -X -q -v ON_ERROR_STOP=1 "$SIM_ESUP_DSN" -c "\\copy sim_unit (unit_code) FROM '$units'" \
        -c "SELECT esup_sim_setup()" >/dev/null
    local rc=$?
    rm -f "$units"
    return $rc
}

sim_esup_step() {
    local month=$1 n=${2:-${SIM_ESUP_CASES_PER_DAY:-2000}}
    if [ -z "${SIM_ESUP_DSN:-}" ]; then
        echo "sim_esup_step: run sim_esup_start first" >&2
        return 2
    fi
    case $month in
    [0-9] | [0-9][0-9]) month=$(printf '%s-%02d' "${SIM_ESUP_YEAR:-2015}" "$((10#$month))") ;;
    [0-9][0-9][0-9][0-9]-[0-9][0-9]) ;;
    *)
        echo "sim_esup_step: MONTH must be YYYY-MM or 1-12, not \"$month\"" >&2
        return 2
        ;;
    esac
    case $n in '' | *[!0-9]*) echo "sim_esup_step: CASES_PER_DAY must be a number" >&2; return 2 ;; esac
    local pause=${SIM_ESUP_DAY_PAUSE:-0} d
    case $pause in '' | *[!0-9.]*) echo "sim_esup_step: SIM_ESUP_DAY_PAUSE must be seconds" >&2; return 2 ;; esac
    if [ "$pause" = 0 ]; then
        PGAPPNAME=$SIM_ESUP_APP psql -X -q -v ON_ERROR_STOP=1 "$SIM_ESUP_DSN" \
            -c "CALL esup_sim_month('$month', $n)" >/dev/null
        return
    fi
    # Day by day, as esup_sim_month does (every 7th day, from the 3rd, commits 0.5 s late).
    for d in $(psql -X -tA -v ON_ERROR_STOP=1 "$SIM_ESUP_DSN" -c "SELECT to_char(d, 'YYYY-MM-DD')
            FROM generate_series(to_date('$month', 'YYYY-MM'),
                                 to_date('$month', 'YYYY-MM') + interval '1 month - 1 day',
                                 interval '1 day') d"); do
        PGAPPNAME=$SIM_ESUP_APP psql -X -q -v ON_ERROR_STOP=1 "$SIM_ESUP_DSN" \
            -c "SELECT esup_sim_day('$d', $n, CASE WHEN $((10#${d##*-})) % 7 = 3 THEN 0.5 ELSE 0 END)" \
            >/dev/null || return 1
        sleep "$pause"
    done
}

sim_esup_stop() {
    [ -n "${SIM_ESUP_WORK:-}" ] || return 0
    kp_pg_psql "$SIM_ESUP_WORK/pg" -tA -c "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
        WHERE datname = 'dept_esup' AND application_name = '$SIM_ESUP_APP'" >/dev/null 2>&1 || true
}
