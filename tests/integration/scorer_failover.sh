#!/usr/bin/env bash
# Scenario: two kp-scorer processes serve anshan-2015 against one PostgreSQL. The first takes
# the scheme's advisory lock; the second is a standby. While the statistics bureau publishes
# and revises rows, the active scorer is killed with SIGKILL: the standby takes the lock and
# registers, the broker routes to it, and the adapter's retransmits land there. The killed
# scorer comes back as the standby and takes over again when the other one is killed. Every
# source row's latest revision ends exactly once in the database (ARCHITECTURE.md "scorer/":
# one active scorer per scheme, a standby takes over when it dies; guarantees 1 and 2).
# Takeover times are measured and printed; the only timed assertion is a generous deadline.
. "$(dirname "$0")/lib.sh"

units="'AS-HC','AS-TA','AS-XY','AS-TD','AS-TX','AS-LS','AS-QS','AS-GX','AS-JK','AS-QSFJ'"
leaves="'gdp_growth','fixed_asset_growth','fiscal_revenue_growth','retail_sales_growth','income_growth','energy_per_gdp'"
publish() { # months FROM..TO
    qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value)
        SELECT u, l, '2015-' || lpad(m::text, 2, '0'), round((random() * 25 - 5)::numeric, 2)
          FROM unnest(ARRAY[$units]) u, unnest(ARRAY[$leaves]) l, generate_series($1, $2) m" >/dev/null
}
revise() { qs "UPDATE indicator_value SET value = value + 0.5 WHERE id % $1 = 0" >/dev/null; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# wait_log NAME PATTERN SECONDS: until the daemon's log has a line matching PATTERN.
wait_log() {
    local i
    for i in $(seq 1 $(($3 * 20))); do
        grep -q "$2" "$KP_WORK/logs/$1.log" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "FAIL: $1 did not log '$2' within $3 s" >&2
    return 1
}
# batches committed after the epoch time $1
committed_since() { q "SELECT count(*) FROM batch WHERE received_at > to_timestamp($1)"; }

# takeover VICTIM HEIR: SIGKILL the active scorer VICTIM; measure until HEIR holds the lock
# (its scheme_active line) and until the first batch is committed after the kill.
takeover() {
    local victim=$1 heir=$2 t0 n_active
    n_active=$(grep -c "code=scheme_active" "$KP_WORK/logs/$heir.log" 2>/dev/null || true)
    t0=$(now)
    kp_cluster_kill "$victim" KILL
    local i lock_s="" commit_s=""
    for i in $(seq 1 600); do # the deadline: 30 s, far above the expected second or two
        if [ -z "$lock_s" ] && [ "$(grep -c "code=scheme_active" "$KP_WORK/logs/$heir.log")" -gt "$n_active" ]; then
            lock_s=$(since "$t0")
        fi
        if [ -z "$commit_s" ] && [ "$(committed_since "$t0")" -gt 0 ]; then
            commit_s=$(since "$t0")
        fi
        [ -n "$lock_s" ] && [ -n "$commit_s" ] && break
        sleep 0.05
    done
    if [ -z "$lock_s" ] || [ -z "$commit_s" ]; then
        echo "FAIL: no takeover by $heir within 30 s (lock: ${lock_s:-none}, first commit: ${commit_s:-none})" >&2
        exit 1
    fi
    echo "takeover $victim -> $heir: lock taken after ${lock_s}s, first batch committed after ${commit_s}s"
    grep -q "code=scorer_registered scheme=$KP_SCHEME scorer=$KP_SCHEME-" "$KP_WORK/logs/broker.log"
}

# Small batches and short timeouts: many batches are in flight when the scorer dies.
kp_cluster_adapter stats stats "$SDSN" "$KP_SOURCE_DIR/deploy/sim/department_query.sql" \
    "batch_max_obs: 10
inflight: 4
ack_timeout_ms: 1000
retry_min_ms: 100
retry_max_ms: 1000"
printf 'lock_poll_ms: 200\nhb_ms: 500\n' >>"$KP_WORK/etc/scorer.yaml"
printf 'hb_ms: 500\n' >>"$KP_WORK/etc/broker.yaml"
kp_cluster_scorer b
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
wait_log scorer "code=scheme_active scheme=$KP_SCHEME" 30
kp_cluster_start scorer-b
wait_log scorer-b "code=standby scheme=$KP_SCHEME" 30
check "exactly one scheme lock is held" \
    "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1802531683 AND granted")" 1
kp_cluster_start adapter-stats

publish 1 4
kp_wait_sql "$DSN" "SELECT count(*) > 100 FROM observation" t 60
publish 5 8 # in flight while the active scorer dies
takeover scorer scorer-b
revise 7
publish 9 10

# The killed scorer returns as the standby; then the other one dies.
kp_cluster_start scorer
wait_log scorer "code=standby scheme=$KP_SCHEME" 30
publish 11 12
sleep 0.3
takeover scorer-b scorer
revise 11
kp_cluster_start scorer-b
wait_log scorer-b "code=standby scheme=$KP_SCHEME" 30

check "source rows" "$(qs "SELECT count(*) FROM indicator_value")" 720
psql -X -q -v ON_ERROR_STOP=1 "$SDSN" \
    -c "\\copy (SELECT 'siv-' || id, revision FROM indicator_value) TO '$it_work/src.tsv'"
q "CREATE TABLE it_src (ref text, rev int)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$DSN" -c "\\copy it_src FROM '$it_work/src.tsv'"
kp_wait_sql "$DSN" "SELECT count(*) FROM it_src s JOIN LATERAL (SELECT max(rev) r FROM observation o WHERE o.ref = s.ref) m ON m.r = s.rev" 720 120

check "no (src, ref, rev) twice" "$(q "SELECT count(*) - count(DISTINCT (src, ref, rev)) FROM observation")" 0
check "no refs the source does not have" \
    "$(q "SELECT count(*) FROM observation o WHERE NOT EXISTS (SELECT 1 FROM it_src s WHERE s.ref = o.ref)")" 0
check "no revision the source never had" \
    "$(q "SELECT count(*) FROM observation o JOIN it_src s ON s.ref = o.ref WHERE o.rev > s.rev")" 0
check "no rejections" "$(q "SELECT count(*) FROM rejection")" 0
check "exactly one scheme lock is held" \
    "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1802531683 AND granted")" 1
kp_wait_sql "$DSN" "SELECT count(*) FROM it_src s JOIN observation o ON o.ref = s.ref AND o.rev = s.rev" 720 10
check "the adapter's spool is empty" \
    "$(sqlite3 "$it_work/spool/stats.db" "SELECT count(*) FROM batch" 2>/dev/null || echo unreadable)" 0
# Each scorer served: batches were committed by both (the adapter's seqs continue across).
check "dup answers were given for retransmits, never a second application" \
    "$(q "SELECT count(*) - count(DISTINCT (adapter, seq)) FROM batch")" 0
echo "scorer_failover: batches=$(q "SELECT count(*) FROM batch") observations=$(q "SELECT count(*) FROM observation") takeovers=2"
echo "scorer_failover: all checks passed"
