#!/usr/bin/env bash
# Fault-injection suite (issue 5; ARCHITECTURE.md guarantees 1-4). A producer streams at least
# KP_FAULT_OBS (default 200000) records - values and events, revisions (some arriving after a
# higher one), records published twice, and bad records - from six simulated department
# systems through six real kp-adapter processes (sql source), a collector, a broker and two
# scorers (active + standby) into PostgreSQL, while a chaos loop
#   - kills every daemon type with SIGKILL several times and restarts it (collector, broker,
#     the active scorer - the standby takes over -, adapters),
#   - restarts the scoring PostgreSQL with `pg_ctl stop -m immediate`, and the departments'
#     PostgreSQL once,
#   - pauses a daemon with SIGSTOP for longer than the adapters' ack timeout, then SIGCONT.
# Afterwards:
#   - every produced record (src, ref, rev) is exactly once in kp_observation, or - a bad
#     record - exactly once in kp_rejection with the reason code it was made to earn;
#   - no (src, ref, rev) appears twice; no batch was applied twice; every spool is empty and
#     holds no dead letter;
#   - kp_unit_score (and kp_indicator_score) equal those of a fault-free run of the same data
#     through a clean cluster into a second database (exact ranks, grades and vetoes; totals,
#     coverages, values and scores to 1e-9);
#   - the collector's, broker's and scorers' peak RSS, sampled throughout (the fault-free run
#     is a sustained overload: 200k records ready at once), stay under generous bounds.
# The counts are printed. Environment: KP_BUILD_DIR, KP_SOURCE_DIR (set by CTest);
# KP_FAULT_OBS (records to produce), KP_FAULT_ROUNDS (chaos rounds, default 3),
# KP_FAULT_RSS_MB (bound for collector/broker, default 256) and KP_FAULT_SCORER_RSS_MB
# (default 1024), KP_FAULT_KEEP=1 (keep the work directory).
set -euo pipefail
: "${KP_BUILD_DIR:?set by CTest}" "${KP_SOURCE_DIR:?set by CTest}"
. "$KP_SOURCE_DIR/tests/harness/pg.sh"
. "$KP_SOURCE_DIR/tests/harness/cluster.sh"

N_OBS=${KP_FAULT_OBS:-200000}
ROUNDS=${KP_FAULT_ROUNDS:-3}
RSS_MB=${KP_FAULT_RSS_MB:-256}
SCORER_RSS_MB=${KP_FAULT_SCORER_RSS_MB:-1024}
CHUNK=2000
SRCS=(stats office tasks finance audit esup)
ACK_TIMEOUT_MS=2000

work=$(mktemp -d /tmp/kp-fault.XXXXXX)
chmod 755 "$work"
t_start=$(date +%s)
bg_pids=()

log() { printf '[%4ds] %s\n' $(($(date +%s) - t_start)) "$*"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # Nothing may stay stopped: SIGCONT before SIGTERM.
    for d in "$work"/a "$work"/b; do
        [ -d "$d/pids" ] || continue
        for f in "$d"/pids/*; do
            [ -e "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null || true
        done
        KP_WORK=$d kp_cluster_stop_all 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        echo "---- FAILED ($rc); daemon logs (tail):"
        for f in "$work"/a/logs/*.log "$work"/b/logs/*.log; do
            [ -e "$f" ] || continue
            echo "== $f"
            tail -n 25 "$f"
        done
    fi
    kp_pg_destroy "$work/core" >/dev/null 2>&1 || true
    kp_pg_destroy "$work/dept" >/dev/null 2>&1 || true
    if [ $rc -eq 0 ] && [ "${KP_FAULT_KEEP:-0}" != 1 ]; then rm -rf "$work"; else echo "work dir: $work"; fi
    exit $rc
}
trap cleanup EXIT INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
check() {
    if [ "$2" = "$3" ]; then echo "ok: $1 ($2)"; else fail "$1: got '$2', want '$3'"; fi
}

# ---- two PostgreSQL clusters: the departments' and the scoring one ------------------------
CORE_PORT=$(kp_pg_free_port)
kp_pg_start "$work/core" "$CORE_PORT" >/dev/null
DEPT_PORT=$(kp_pg_free_port)
kp_pg_start "$work/dept" "$DEPT_PORT" >/dev/null
DSN=$(kp_pg_dsn "$work/core" kaoping)
kp_pg_createdb "$work/core" kaoping_ref
REF_DSN=$(kp_pg_dsn "$work/core" kaoping_ref)
SDSN=$(kp_pg_dsn "$work/dept" kaoping)
psql -X -q -v ON_ERROR_STOP=1 "$SDSN" -f "$KP_SOURCE_DIR/tests/fault/generator.sql" >/dev/null
q() { psql -X -tA -v ON_ERROR_STOP=1 "$DSN" -c "$1"; }
qr() { psql -X -tA -v ON_ERROR_STOP=1 "$REF_DSN" -c "$1"; }
qs() { psql -X -tA -v ON_ERROR_STOP=1 "$SDSN" -c "$1"; }

# ---- a cluster: broker, collector, two scorers, one adapter per source ------------------
# setup_cluster DIR DSN
setup_cluster() {
    kp_cluster_init "$1" "$KP_BUILD_DIR" "$KP_SOURCE_DIR" \
        "$KP_SOURCE_DIR/schemas/schemes/anshan-2015.yaml" "$2"
    printf 'hb_ms: 500\n' >>"$KP_WORK/etc/broker.yaml"
    printf 'hb_ms: 500\nlock_poll_ms: 200\n' >>"$KP_WORK/etc/scorer.yaml"
    sed -i '/^  dsn: /a\  retry_max_ms: 1s' "$KP_WORK/etc/scorer.yaml"
    kp_cluster_scorer b
    local s
    for s in "${SRCS[@]}"; do
        cat >"$KP_WORK/etc/adapter-$s.yaml" <<YAML
instance: $s
aid: fault-$s
scheme: $KP_SCHEME
src: $s
collector: tcp://127.0.0.1:$KP_COL_PORT
spool: $KP_WORK/spool/$s.db
admin: 127.0.0.1:0
batch_max_obs: 250
inflight: 8
ack_timeout_ms: $ACK_TIMEOUT_MS
retry_min_ms: 100
retry_max_ms: 2000
source:
  driver: sql
  dsn: "$SDSN"
  poll_ms: 100
  lag_ms: 300
  query: "SELECT updated_at::text AS wm_ts, id AS wm_id, unit AS u, indicator AS i, period AS p, value AS val, ref, rev, w, (extract(epoch FROM updated_at) * 1000)::bigint AS at FROM fault_log WHERE src = '$s' AND (updated_at, id) > (\$1::timestamptz, \$2::bigint) AND updated_at <= \$3::timestamptz ORDER BY updated_at, id LIMIT \$4"
YAML
    done
}

start_cluster() {
    kp_cluster_start broker
    kp_cluster_start collector
    kp_cluster_start scorer
    kp_cluster_start scorer-b
    local s
    for s in "${SRCS[@]}"; do kp_cluster_start "adapter-$s"; done
}

pid_of() { cat "$KP_WORK/pids/$1" 2>/dev/null || true; }

# The scorer that holds the lock (its /readyz answers 200), else "".
active_scorer() {
    local n
    for n in scorer scorer-b; do
        kp_cluster_alive "$n" || continue
        if [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://$(kp_cluster_admin "$n")/readyz")" = 200 ]; then
            echo "$n"
            return
        fi
    done
}

# ---- RSS sampling ----------------------------------------------------------------------
# rss_sampler FILE: every 0.25 s, the peak VmRSS (kB) per daemon kind of the current cluster.
rss_sampler() {
    local out=$1 kind f pid v
    declare -A peak=([collector]=0 [broker]=0 [scorer]=0 [adapter]=0)
    while :; do
        for f in "$KP_WORK"/pids/*; do
            [ -e "$f" ] || continue
            pid=$(cat "$f" 2>/dev/null) || continue
            kind=$(basename "$f")
            kind=${kind%%-*}
            v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            [ -n "$v" ] && [ "$v" -gt "${peak[$kind]:-0}" ] && peak[$kind]=$v
        done
        printf 'collector %s\nbroker %s\nscorer %s\nadapter %s\n' "${peak[collector]}" \
            "${peak[broker]}" "${peak[scorer]}" "${peak[adapter]}" >"$out.tmp"
        mv "$out.tmp" "$out"
        sleep 0.25
    done
}
rss_of() { awk -v k="$2" '$1 == k {print int($2 / 1024)}' "$1"; }
check_rss() { # FILE LABEL
    local k lim v
    for k in collector broker scorer adapter; do
        v=$(rss_of "$1" $k)
        lim=$RSS_MB
        [ $k = scorer ] && lim=$SCORER_RSS_MB
        echo "peak RSS ($2) $k: ${v} MB (bound $lim MB)"
        [ "$v" -le "$lim" ] || fail "$k RSS ${v} MB above $lim MB ($2)"
    done
}

# ---- expected outcome, from the log --------------------------------------------------------
expected_counts() {
    GOOD=$(qs "SELECT count(DISTINCT (src, ref, rev)) FROM fault_log WHERE expect = 'ok'")
    BAD=$(qs "SELECT count(*) FROM fault_log WHERE expect <> 'ok'")
}
# wait_drained QUERY_FN SECONDS: until observation = GOOD and rejection = BAD.
wait_drained() {
    local fn=$1 secs=$2 i got=""
    for i in $(seq 1 $((secs * 2))); do
        got=$($fn "SELECT (SELECT count(*) FROM observation) || ' ' || (SELECT count(*) FROM rejection)" 2>/dev/null || echo "?")
        [ "$got" = "$GOOD $BAD" ] && return 0
        sleep 0.5
    done
    fail "not drained after ${secs}s: observation/rejection = $got, want $GOOD $BAD"
}

# ======================= run 1: production under chaos ====================================
setup_cluster "$work/a" "$DSN"
start_cluster
rss_sampler "$work/rss-chaos" &
bg_pids+=($!)

# The producer: CHUNK records per call, paced to spread production over the chaos loop
# (about 18 s a round).
pace=$(awk -v r="$ROUNDS" -v n="$N_OBS" -v c=$CHUNK 'BEGIN { s = r * 18 / (n / c) - 0.05; printf "%.2f", s < 0.05 ? 0.05 : s }')
(
    made=0
    while [ "$made" -lt "$N_OBS" ]; do
        if n=$(psql -X -tA -v ON_ERROR_STOP=1 "$SDSN" -c "SELECT fault_produce($CHUNK)" 2>/dev/null); then
            made=$((made + n))
            echo "$made" >"$work/produced"
        fi
        sleep "$pace"
    done
    touch "$work/produced.done"
) &
producer=$!
bg_pids+=($producer)
log "producing $N_OBS records through ${#SRCS[@]} adapters; chaos: $ROUNDS rounds"

n_kill=0 n_pg=0 n_stop=0
kill_restart() { # NAME [DOWN_SECONDS]
    kp_cluster_kill "$1" KILL
    n_kill=$((n_kill + 1))
    sleep "${2:-0.5}"
    kp_cluster_start "$1"
}
stop_cont() { # NAME: SIGSTOP for twice the ack timeout
    local pid
    pid=$(pid_of "$1")
    [ -n "$pid" ] || return 0
    kill -STOP "$pid"
    n_stop=$((n_stop + 1))
    sleep $((2 * ACK_TIMEOUT_MS / 1000))
    kill -CONT "$pid"
}
sleep 2
for round in $(seq 1 "$ROUNDS"); do
    log "round $round: collector"
    kill_restart collector
    sleep 1.5
    log "round $round: broker"
    kill_restart broker
    sleep 1.5
    act=$(active_scorer)
    log "round $round: active scorer ${act:-none} (SIGKILL; the standby takes over)"
    if [ -n "$act" ]; then kill_restart "$act" 1; fi
    sleep 1.5
    a=${SRCS[$(((round * 2) % ${#SRCS[@]}))]}
    b=${SRCS[$(((round * 2 + 1) % ${#SRCS[@]}))]}
    log "round $round: adapters $a and $b"
    kp_cluster_kill "adapter-$a" KILL
    kill_restart "adapter-$b"
    n_kill=$((n_kill + 1))
    kp_cluster_start "adapter-$a"
    sleep 1.5
    log "round $round: PostgreSQL stop -m immediate"
    kp_pg_kill "$work/core"
    n_pg=$((n_pg + 1))
    sleep 2
    kp_pg_start "$work/core" "$CORE_PORT" >/dev/null
    sleep 1.5
    case $round in
    1) victim=$(active_scorer); victim=${victim:-scorer} ;;
    2) victim=broker ;;
    *) victim=collector ;;
    esac
    log "round $round: SIGSTOP $victim for $((2 * ACK_TIMEOUT_MS / 1000))s"
    stop_cont "$victim"
    if [ "$round" = 2 ]; then
        log "round $round: the departments' PostgreSQL stop -m immediate"
        kp_pg_kill "$work/dept"
        n_pg=$((n_pg + 1))
        sleep 1
        kp_pg_start "$work/dept" "$DEPT_PORT" >/dev/null
    fi
    sleep 1.5
done
log "chaos over: $n_kill SIGKILLs, $n_pg PostgreSQL crashes, $n_stop SIGSTOPs"
while [ ! -e "$work/produced.done" ]; do sleep 0.5; done
wait "$producer" 2>/dev/null || true
expected_counts
log "produced $(cat "$work/produced") records; waiting for the pipeline to drain"
wait_drained q 300
log "drained"
cp "$work/rss-chaos" "$work/rss-chaos.final"

# ---- checks ------------------------------------------------------------------------------
psql -X -q -v ON_ERROR_STOP=1 "$SDSN" -c "\\copy (SELECT src, ref, rev, unit, indicator, period, value, w, expect, dup FROM fault_log) TO '$work/log.tsv'"
q "CREATE TABLE fault_log (src text, ref text, rev numeric, unit text, indicator text, period text,
                           value float8, w float8, expect text, dup boolean)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$DSN" -c "\\copy fault_log FROM '$work/log.tsv'"
q "CREATE INDEX ON fault_log (src, ref, rev); ANALYZE fault_log; ANALYZE observation; ANALYZE rejection" >/dev/null
PRODUCED=$(q "SELECT count(*) FROM fault_log")
DUPS=$(q "SELECT count(*) FROM fault_log WHERE dup")
REVS=$(q "SELECT count(*) FROM (SELECT DISTINCT src, ref, rev FROM fault_log WHERE expect = 'ok' AND rev > 0) x")
LATE=$(q "SELECT count(*) FROM (SELECT src, ref, rev FROM fault_log WHERE expect = 'ok' AND NOT dup) l
           WHERE rev % 2 = 0 AND EXISTS (SELECT 1 FROM fault_log h WHERE h.src = l.src AND h.ref = l.ref AND h.rev = l.rev + 1)")
EVENTS=$(q "SELECT count(*) FROM fault_log WHERE src IN ('audit', 'esup') OR indicator IN ('commendation', 'criticism', 'interview')")
[ "$PRODUCED" -ge "$N_OBS" ] || fail "produced $PRODUCED records, fewer than $N_OBS"
check "every good record (src, ref, rev) is an observation" \
    "$(q "SELECT count(*) FROM (SELECT DISTINCT src, ref, rev FROM fault_log WHERE expect = 'ok') l
          WHERE EXISTS (SELECT 1 FROM observation o WHERE o.scheme = 'anshan-2015' AND o.src = l.src AND o.ref = l.ref AND o.rev = l.rev)")" "$GOOD"
check "observations = distinct good records (nothing else stored)" "$(q "SELECT count(*) FROM observation")" "$GOOD"
check "no (src, ref, rev) twice" "$(q "SELECT count(*) - count(DISTINCT (scheme, src, ref, rev)) FROM observation")" 0
check "observations carry the produced values" \
    "$(q "SELECT count(*) FROM observation o JOIN (SELECT DISTINCT src, ref, rev, unit, indicator, period, value, w
                                                    FROM fault_log WHERE expect = 'ok') l
           ON l.src = o.src AND l.ref = o.ref AND l.rev = o.rev
          WHERE l.unit = o.unit AND l.indicator = o.indicator AND l.period = o.period AND l.value = o.value AND l.w = o.w")" "$GOOD"
check "every bad record is exactly one rejection" \
    "$(q "SELECT count(*) FROM (SELECT l.src, l.ref, count(r.id) AS n FROM fault_log l
          LEFT JOIN rejection r ON r.src = l.src AND r.ref = l.ref WHERE l.expect <> 'ok' GROUP BY 1, 2) x
          WHERE n = 1")" "$BAD"
check "rejections = bad records" "$(q "SELECT count(*) FROM rejection")" "$BAD"
check "every rejection has the expected reason code" \
    "$(q "SELECT count(*) FROM fault_log l JOIN rejection r ON r.src = l.src AND r.ref = l.ref WHERE r.code = l.expect")" "$BAD"
check "no bad record stored" "$(q "SELECT count(*) FROM observation o JOIN fault_log l ON l.src = o.src AND l.ref = o.ref AND l.expect <> 'ok'")" 0
check "no batch applied twice" "$(q "SELECT count(*) - count(DISTINCT (adapter, seq)) FROM batch")" 0
for s in "${SRCS[@]}"; do
    check "spool of $s empty, no dead letters" \
        "$(sqlite3 "$KP_WORK/spool/$s.db" "SELECT (SELECT count(*) FROM batch) || '/' || (SELECT count(*) FROM dead)" 2>/dev/null || echo unreadable)" "0/0"
done
BATCHES=$(q "SELECT count(*) FROM batch")
DUP_ACKS=$(cat "$KP_WORK"/logs/scorer*.log | grep -c "code=batch_dup" || true)
RETRANSMITS=$(cat "$KP_WORK"/logs/adapter-*.log | grep -c "code=batch_retransmitted" || true)
TAKEOVERS=$(cat "$KP_WORK"/logs/scorer*.log | grep -c "code=lock_taken" || true)
OVERLOADED=$(cat "$KP_WORK"/logs/adapter-*.log | grep -c "reason=overloaded" || true)
UNAVAILABLE=$(cat "$KP_WORK"/logs/adapter-*.log | grep -c "reason=scorer_unavailable" || true)
KP_WORK=$work/a kp_cluster_stop_all
kill "${bg_pids[0]}" 2>/dev/null || true
t_chaos=$(($(date +%s) - t_start))

# ======================= run 2: the same data, no faults ====================================
log "fault-free run of the same data into kaoping_ref"
setup_cluster "$work/b" "$REF_DSN"
start_cluster
rss_sampler "$work/rss-ref" &
bg_pids+=($!)
wait_drained qr 300
log "drained"
check "fault-free run: no batch applied twice" "$(qr "SELECT count(*) - count(DISTINCT (adapter, seq)) FROM batch")" 0
KP_WORK=$work/b kp_cluster_stop_all

# ---- compare the scores ---------------------------------------------------------------
psql -X -q -v ON_ERROR_STOP=1 "$REF_DSN" -c "\\copy (SELECT scheme, period, unit, total, coverage, rank, grade, vetoed FROM kp_unit_score) TO '$work/ref_unit.tsv'"
psql -X -q -v ON_ERROR_STOP=1 "$REF_DSN" -c "\\copy (SELECT scheme, period, unit, indicator, value, score, n_obs FROM kp_indicator_score) TO '$work/ref_ind.tsv'"
psql -X -q -v ON_ERROR_STOP=1 "$REF_DSN" -c "\\copy (SELECT src, ref, rev FROM observation) TO '$work/ref_obs.tsv'"
q "CREATE TABLE ref_unit (scheme text, period text, unit text, total float8, coverage float8, rank int, grade text, vetoed bool);
   CREATE TABLE ref_ind (scheme text, period text, unit text, indicator text, value float8, score float8, n_obs int);
   CREATE TABLE ref_obs (src text, ref text, rev numeric)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$DSN" -c "\\copy ref_unit FROM '$work/ref_unit.tsv'" \
    -c "\\copy ref_ind FROM '$work/ref_ind.tsv'" -c "\\copy ref_obs FROM '$work/ref_obs.tsv'"
UNIT_ROWS=$(q "SELECT count(*) FROM kp_unit_score")
IND_ROWS=$(q "SELECT count(*) FROM kp_indicator_score")
check "fault-free run stored the same observations" \
    "$(q "SELECT count(*) FROM ref_obs r JOIN observation o USING (src, ref, rev)") $(q "SELECT count(*) FROM ref_obs")" "$GOOD $GOOD"
check "kp_unit_score rows as in the fault-free run" "$(q "SELECT count(*) FROM ref_unit")" "$UNIT_ROWS"
check "kp_unit_score equals the fault-free run (total/coverage to 1e-9; rank, grade, vetoed exact)" \
    "$(q "SELECT count(*) FROM kp_unit_score s JOIN ref_unit r USING (scheme, period, unit)
          WHERE abs(s.total - r.total) <= 1e-9 AND abs(s.coverage - r.coverage) <= 1e-9
            AND s.rank = r.rank AND s.grade = r.grade AND s.vetoed = r.vetoed")" "$UNIT_ROWS"
check "kp_indicator_score equals the fault-free run" \
    "$(q "SELECT count(*) FROM ref_ind r") $(q "SELECT count(*) FROM kp_indicator_score s JOIN ref_ind r USING (scheme, period, unit, indicator)
          WHERE abs(s.score - r.score) <= 1e-9 AND s.n_obs = r.n_obs
            AND ((s.value IS NULL AND r.value IS NULL) OR abs(s.value - r.value) <= 1e-9)")" "$IND_ROWS $IND_ROWS"
MAXDIFF=$(q "SELECT coalesce(max(abs(s.total - r.total)), 0) FROM kp_unit_score s JOIN ref_unit r USING (scheme, period, unit)")

check_rss "$work/rss-chaos.final" "under chaos"
check_rss "$work/rss-ref" "fault-free run, all records at once"

t_all=$(($(date +%s) - t_start))
cat <<EOF
fault_suite: produced=$PRODUCED records (republished duplicates=$DUPS, revisions=$REVS of which
  arriving after a higher one=$LATE, event records=$EVENTS, bad=$BAD) through ${#SRCS[@]} adapters
fault_suite: observation=$GOOD rejection=$BAD batches=$BATCHES
fault_suite: chaos: SIGKILL=$n_kill (collector, broker, scorer, adapters x$ROUNDS) postgres_crashes=$n_pg
  sigstop=$n_stop (> ack timeout ${ACK_TIMEOUT_MS}ms) scorer_lock_takes=$TAKEOVERS
fault_suite: retransmits=$RETRANSMITS dup_acks=$DUP_ACKS nacks_overloaded=$OVERLOADED nacks_scorer_unavailable=$UNAVAILABLE
fault_suite: kp_unit_score rows=$UNIT_ROWS kp_indicator_score rows=$IND_ROWS max |total - fault-free total|=$MAXDIFF
fault_suite: seconds: chaos run ${t_chaos}, total ${t_all}
fault_suite: all checks passed
EOF
