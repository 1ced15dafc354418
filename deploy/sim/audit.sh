# shellcheck shell=bash
#
# audit.sh: the simulated audit bureau (审计局) of the local cluster and the tests: the
# kp-sim-audit HTTP server (deploy/sim/sim_audit.c) serving the audit findings of the
# scheme's units as a JSON API with bearer-token auth, evolving month by month (new findings,
# late ones, rectifications, reopenings, corrections, bad rows fixed later). Source it after
# tests/harness/pg.sh and tests/harness/cluster.sh; kp_cluster_init must have run (KP_BIN,
# KP_SCHEME_FILE), or pass BUILD_DIR and SCHEME_FILE. It defines functions only.
#
#   sim_audit_start WORK [BUILD_DIR [SCHEME_FILE]]
#       start kp-sim-audit on a free port of 127.0.0.1 for the units of the scheme
#       (kpctl scheme); the bearer token goes to WORK/etc/audit.token (mode 0600), the state
#       to WORK/sim-audit.json (a restart serves the same feed), the log to
#       WORK/logs/sim-audit.log, the pid to WORK/pids/sim-audit (so kp_cluster_stop_all
#       stops it too). Exports AUDIT_URL (the findings endpoint), AUDIT_TOKEN_FILE and
#       AUDIT_CONTROL (the base of the control endpoints). SIM_AUDIT_SEED (2015) and
#       SIM_AUDIT_BAD_RATE (0.03, the share of new findings that are malformed) tune it.
#   sim_audit_step MONTH        advance the simulated year to MONTH (1-12 or YYYY-MM):
#                               publish its findings and the progress of earlier ones
#   sim_audit_fail STATUS COUNT answer the next COUNT API requests with STATUS (500, 401, …)
#   sim_audit_delay MS COUNT    delay the next COUNT API responses by MS
#   sim_audit_finding JSON      create or update one finding (a new version at once; see
#                               sim_audit.c: {"id":…, fields…} or {"id":…, "raw": <any JSON>})
#   sim_audit_token TOKEN       the bureau rotates its token (the API accepts only TOKEN;
#                               write it to AUDIT_TOKEN_FILE to let the adapter follow)
#   sim_audit_stats             print the server's counters (JSON)
#   sim_audit_stop              stop the server (its state file stays)
#
# With the adapter profile deploy/profiles/audit.yaml:
#   sim_audit_start "$work"
#   kp_cluster_adapter_profile audit "$top/deploy/profiles/audit.yaml" \
#       AUDIT_URL="$AUDIT_URL" AUDIT_TOKEN_FILE="$AUDIT_TOKEN_FILE"
#   kp_cluster_start adapter-audit
#   sim_audit_step 1

sim_audit_start() {
    local work=${1:-} bdir=${2:-${KP_BIN:-}} scheme=${3:-${KP_SCHEME_FILE:-}}
    if [ -z "$work" ] || [ ! -d "$work" ]; then
        echo "sim_audit_start: usage: sim_audit_start WORK [BUILD_DIR [SCHEME_FILE]]" >&2
        return 2
    fi
    if [ -z "$bdir" ] || [ -z "$scheme" ]; then
        echo "sim_audit_start: run kp_cluster_init first (KP_BIN, KP_SCHEME_FILE) or pass them" >&2
        return 2
    fi
    local bin=$bdir/deploy/sim/kp-sim-audit
    if [ ! -x "$bin" ]; then
        echo "sim_audit_start: $bin is not built" >&2
        return 1
    fi
    mkdir -p "$work/etc" "$work/logs" "$work/pids" || return 1
    SIM_AUDIT_WORK=$work
    local units=$work/etc/audit-units.tsv port_file=$work/sim-audit.port
    if ! "$bdir/kpctl/kpctl" scheme "$scheme" >"$units"; then
        echo "sim_audit_start: kpctl scheme $scheme failed" >&2
        return 1
    fi
    AUDIT_TOKEN_FILE=$work/etc/audit.token
    if [ ! -s "$AUDIT_TOKEN_FILE" ]; then
        (
            umask 077
            od -An -tx1 -N18 /dev/urandom | tr -d ' \n' >"$AUDIT_TOKEN_FILE"
            echo >>"$AUDIT_TOKEN_FILE"
        ) || return 1
    fi
    chmod 600 "$AUDIT_TOKEN_FILE"
    rm -f "$port_file"
    "$bin" --units "$units" --port 0 --port-file "$port_file" --token-file "$AUDIT_TOKEN_FILE" \
        --state "$work/sim-audit.json" --seed "${SIM_AUDIT_SEED:-2015}" \
        --bad-rate "${SIM_AUDIT_BAD_RATE:-0.03}" >>"$work/logs/sim-audit.log" 2>&1 &
    echo $! >"$work/pids/sim-audit"
    local i port=""
    for i in $(seq 1 100); do
        if [ -s "$port_file" ]; then
            port=$(cat "$port_file")
            break
        fi
        if ! kill -0 "$(cat "$work/pids/sim-audit")" 2>/dev/null; then
            echo "sim_audit_start: kp-sim-audit exited; see $work/logs/sim-audit.log" >&2
            tail -n 5 "$work/logs/sim-audit.log" >&2
            return 1
        fi
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "sim_audit_start: kp-sim-audit did not start in 10 s" >&2
        return 1
    fi
    AUDIT_URL=http://127.0.0.1:$port/api/v1/findings
    AUDIT_CONTROL=http://127.0.0.1:$port/control
    export AUDIT_URL AUDIT_TOKEN_FILE AUDIT_CONTROL
    curl -fsS --max-time 5 "http://127.0.0.1:$port/healthz" >/dev/null
}

# sim__audit_post PATH [BODY]: POST to a control endpoint, print the answer.
sim__audit_post() {
    if [ -z "${AUDIT_CONTROL:-}" ]; then
        echo "sim_audit: run sim_audit_start first" >&2
        return 2
    fi
    curl -fsS --max-time 30 -X POST --data-binary "${2:-}" "$AUDIT_CONTROL/$1"
}

sim_audit_step() {
    local month=${1:-}
    case $month in
    [0-9][0-9][0-9][0-9]-[0-9][0-9]) month=$((10#${month#*-})) ;;
    [0-9] | [0-9][0-9]) month=$((10#$month)) ;;
    *)
        echo "sim_audit_step: MONTH must be 1-12 or YYYY-MM, not \"$month\"" >&2
        return 2
        ;;
    esac
    sim__audit_post "step?month=$month" >/dev/null
}

sim_audit_fail() {
    sim__audit_post "fail?status=${1:?status}&count=${2:-1}" >/dev/null
}

sim_audit_delay() {
    sim__audit_post "delay?ms=${1:?ms}&count=${2:-1}" >/dev/null
}

sim_audit_finding() {
    sim__audit_post finding "${1:?json}" >/dev/null
}

sim_audit_token() {
    sim__audit_post token "${1:?token}" >/dev/null
}

sim_audit_stats() {
    curl -fsS --max-time 5 "${AUDIT_CONTROL:?run sim_audit_start first}/stats"
    echo
}

sim_audit_stop() {
    local work=${SIM_AUDIT_WORK:-} pid
    [ -n "$work" ] || return 0
    pid=$(cat "$work/pids/sim-audit" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
    rm -f "$work/pids/sim-audit"
}
