#!/usr/bin/env bash
# Scenario (issue 4, ARCHITECTURE.md guarantee 1, STYLE.md "backpressure, never drop"):
#  1. A full spool stops pulling and resumes when space returns. kp-adapter runs the esup
#     profile with a 64 KiB spool while the scorer is down, so nothing is acked. The
#     e-supervision database keeps growing; the adapter fills its spool, says so on /metrics
#     (kaoping_adapter_spool_full_total) and /readyz (503), stops pulling
#     (kaoping_adapter_rows_pulled_total stands still however much the source grows), keeps
#     its spool within the bound and its memory flat. Then the scorer starts: every case
#     arrives exactly once, with its latest revision, and the spool empties.
#  2. Dead letters come back with `kpctl dlq retry`. The collector is restarted with
#     max_obs 5, below the adapter's batches: they are refused for good (too_large) and moved
#     to the dead letters, which `kpctl dlq list` and `show` report. With the limit restored,
#     `kpctl dlq retry --all` queues them again under new seqs and they are delivered, again
#     exactly once.
. "$(dirname "$0")/lib.sh"
. "$KP_SOURCE_DIR/deploy/sim/esup.sh"

sim_esup_start "$it_work"
ES=$SIM_ESUP_DSN
qe() { psql -X -tA -v ON_ERROR_STOP=1 "$ES" -c "$1"; }
KPCTL=$KP_BUILD_DIR/kpctl/kpctl
ADP_CFG=$it_work/etc/adapter-esup.yaml
SPOOL=$it_work/spool/esup.db

kp_cluster_adapter_profile esup "$KP_SOURCE_DIR/deploy/profiles/esup.yaml" SOURCE_DSN="$ES" \
    "spool_max_bytes: 64k" "batch_max_obs: 50" "ack_timeout_ms: 500ms" "retry_min_ms: 100ms" \
    "retry_max_ms: 1s" "source.poll_ms: 100ms" "source.lag_ms: 1s"

metric() { kp_cluster_metric adapter-esup "$1" || echo "?"; }
# The value once the adapter's admin endpoint answers (it was just restarted).
metric_up() {
    local i v
    for i in $(seq 1 150); do
        v=$(metric "$1")
        [ "$v" != "?" ] && { echo "$v"; return 0; }
        sleep 0.2
    done
    echo "metric_up: $1 unreadable for 30 s" >&2
    return 1
}
readyz() { curl -s -o /dev/null -w '%{http_code}' "http://$(kp_cluster_admin adapter-esup)/readyz"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$(cat "$it_work/pids/adapter-esup")/status"; }
wait_metric() { # NAME CONDITION(awk on v) SECONDS
    local i v
    for i in $(seq 1 $(($3 * 5))); do
        v=$(metric "$1")
        if [ "$v" != "?" ] && awk -v v="$v" "BEGIN { exit !($2) }"; then return 0; fi
        sleep 0.2
    done
    echo "wait_metric: $1 = $v, wanted $2" >&2
    return 1
}
# Every case in the source is delivered once with its latest revision, and no (ref, rev) was
# sent twice (Σ n_obs of the committed batches = stored observations).
check_exactly_once() {
    local n
    n=$(qe "SELECT count(*) FROM approval_case")
    kp_wait_sql "$DSN" "SELECT count(DISTINCT ref) FROM observation WHERE src = 'esup'" "$n" 120
    psql -X -q -v ON_ERROR_STOP=1 "$ES" \
        -c "\\copy (SELECT case_no, revision FROM approval_case) TO '$it_work/esup-src.tsv'"
    q "SET client_min_messages = warning; DROP TABLE IF EXISTS it_src;
       CREATE TABLE it_src (ref text PRIMARY KEY, rev int)" >/dev/null
    psql -X -q -v ON_ERROR_STOP=1 "$DSN" -c "\\copy it_src FROM '$it_work/esup-src.tsv'"
    kp_wait_sql "$DSN" "SELECT count(*) FROM it_src s
                         WHERE s.rev = (SELECT max(rev) FROM observation o WHERE o.ref = s.ref)" "$n" 120
    check "$1: every case's latest revision stored ($n cases)" \
        "$(q "SELECT count(*) FROM it_src s WHERE s.rev = (SELECT max(rev) FROM observation o WHERE o.ref = s.ref)")" "$n"
    check "$1: nothing the source does not have" \
        "$(q "SELECT count(*) FROM observation o WHERE NOT EXISTS (SELECT 1 FROM it_src s WHERE s.ref = o.ref)")" 0
    check "$1: nothing sent twice (observations = Σ n_obs)" \
        "$(q "SELECT count(*) FROM observation")" "$(q "SELECT coalesce(sum(n_obs), 0) FROM batch")"
    check "$1: no rejections" "$(q "SELECT count(*) FROM rejection")" 0
}

# ---- 1. full spool, scorer down ------------------------------------------------------------
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start adapter-esup
sim_esup_step 2015-03 200
wait_metric kaoping_adapter_spool_full_total "v >= 1" 60
sleep 1.5 # let a poll that was under way settle
check "/readyz says not ready while full" "$(readyz)" 503
bytes=$(metric kaoping_adapter_spool_bytes)
check "the spool holds at most its bound" "$(awk -v b="$bytes" 'BEGIN { print (b > 0 && b <= 65536) }')" 1
pulled=$(metric kaoping_adapter_rows_pulled_total)
rss0=$(rss_kb)
check "pulled less than the source holds" \
    "$(awk -v p="$pulled" -v n="$(qe "SELECT count(*) FROM approval_case")" 'BEGIN { print (p < n) }')" 1
# The source keeps growing: two more months while the spool is full.
sim_esup_step 2015-04 100
sim_esup_step 2015-05 100
sleep 2
check "pulling stopped: rows_pulled unchanged" "$(metric kaoping_adapter_rows_pulled_total)" "$pulled"
check "refused once, not retried in a loop" "$(metric kaoping_adapter_spool_full_total)" 1
check "spool bytes unchanged" "$(metric kaoping_adapter_spool_bytes)" "$bytes"
rss1=$(rss_kb)
echo "adapter VmRSS: ${rss0} kB when full, ${rss1} kB after the source grew by $(qe "SELECT count(*) FROM approval_case") cases in all"
# Nothing is read while full (rows_pulled above); what memory may still move is SQLite's page
# cache (2 MiB) and allocator slack of the retransmissions (more under ASan).
check "memory stays bounded while the source grows (< 8 MiB more)" \
    "$(awk -v a="$rss0" -v b="$rss1" 'BEGIN { print (b - a < 8192) }')" 1
check "the adapter is still running" "$(kp_cluster_alive adapter-esup && echo yes)" yes

# Space returns: the scorer starts, acks free the spool, pulling resumes.
kp_cluster_start scorer
check_exactly_once "after the spool was full"
wait_metric kaoping_adapter_spool_depth "v == 0" 30
check "/readyz ready again" "$(readyz)" 200
grep -q 'spool_resumed' "$it_work/logs/adapter-esup.log" && echo "ok: spool_resumed logged"

# ---- 2. dead letters and kpctl dlq retry -----------------------------------------------------
# A roomier spool from here on (the operator's restart): the retried batches below must not
# stop the pull, which is what brings the adapter to scan its spool again.
kp_cluster_adapter_profile esup "$KP_SOURCE_DIR/deploy/profiles/esup.yaml" SOURCE_DSN="$ES" \
    "spool_max_bytes: 8M" "batch_max_obs: 50" "ack_timeout_ms: 500ms" "retry_min_ms: 100ms" \
    "retry_max_ms: 1s" "source.poll_ms: 100ms" "source.lag_ms: 1s"
kp_cluster_kill adapter-esup TERM
kp_cluster_start adapter-esup
echo "max_obs: 5" >>"$it_work/etc/collector.yaml"
kp_cluster_kill collector TERM
kp_cluster_start collector
dead0=$(metric_up kaoping_adapter_spool_dead) || exit 1
sim_esup_step 2015-06 20
wait_metric kaoping_adapter_spool_dead "v > $dead0" 60
# Settled: everything the source holds pulled (lag_ms behind), nothing waiting, the count of
# dead letters steady.
sleep 2
wait_metric kaoping_adapter_spool_depth "v == 0" 60
dead=""
for i in $(seq 1 60); do
    sleep 1
    now=$(metric kaoping_adapter_spool_dead)
    [ "$now" = "$dead" ] && [ "$(metric kaoping_adapter_spool_depth)" = 0 ] && break
    dead=$now
done
"$KPCTL" dlq list -c "$ADP_CFG" >"$it_work/dlq-list.txt"
cat "$it_work/dlq-list.txt"
check "kpctl dlq list shows every dead batch as too_large" \
    "$(grep -c ' too_large ' "$it_work/dlq-list.txt")" "$dead"
first=$(awk '/^dead batches/ { on = 1; getline; next } on && /too_large/ { print $1; exit }' "$it_work/dlq-list.txt")
"$KPCTL" dlq show "$first" --spool "$SPOOL" >"$it_work/dlq-show.txt"
head -n 5 "$it_work/dlq-show.txt"
check "kpctl dlq show decodes the batch" \
    "$(grep -c ' approval_ontime ' "$it_work/dlq-show.txt")" \
    "$(sed -n 's/^aid .* \([0-9][0-9]*\) observations (.*/\1/p' "$it_work/dlq-show.txt")"
check "kpctl dlq show of a seq that is nowhere fails" \
    "$("$KPCTL" dlq show 999999 --spool "$SPOOL" >/dev/null 2>&1; echo $?)" 1
missing=$(q "SELECT count(*) FROM observation")
check "the dead cases are not in the database yet" \
    "$(awk -v a="$missing" -v b="$(qe "SELECT count(*) FROM approval_case")" 'BEGIN { print (a < b) }')" 1

# Fix the cause, then retry beside the running adapter. It takes the retried batches (new
# seqs, above all it has queued) at its next scan of the spool: here the scan that its next
# new batch triggers, as the department's system goes on writing. (An adapter with nothing
# new to pull and nothing in flight does not scan again before its next start.)
sed -i '/^max_obs: 5$/d' "$it_work/etc/collector.yaml"
kp_cluster_kill collector TERM
kp_cluster_start collector
"$KPCTL" dlq retry --all --spool "$SPOOL" | tee "$it_work/dlq-retry.txt"
check "every dead batch queued again" "$(grep -c 'queued again as seq' "$it_work/dlq-retry.txt")" "$dead"
check "kpctl dlq retry of a seq that is not dead fails" \
    "$("$KPCTL" dlq retry "$first" --spool "$SPOOL" >/dev/null 2>&1; echo $?)" 1
sim_esup_step 2015-07 40
check_exactly_once "after kpctl dlq retry"
wait_metric kaoping_adapter_spool_dead "v == 0" 30
check "the retried batches' old seqs were never committed" \
    "$(q "SELECT count(*) FROM batch WHERE adapter = 'esup' AND seq = $first")" 0
"$KPCTL" dlq list --spool "$SPOOL" | grep -A2 '^dead batches'
echo "adapter_spool_full: all checks passed"
