#!/usr/bin/env bash
# Hostile-input suite (issue 5; ARCHITECTURE.md guarantee 4: "the daemons keep running
# whatever arrives on the wire"). A real kp-collector, kp-broker and kp-scorer (anshan-2015)
# on a throwaway PostgreSQL; tests/hostile/hostile_client.c sends random bytes, truncated
# frames, wrong types in every field, NaN and infinities, overlong strings, invalid UTF-8,
# unknown versions, huge declared containers, frames above the size limit, multipart messages
# and floods, each checked for its reason code or disconnect, with valid batches in between;
# then a client that ignores the window floods valid batches: every one ends acked (after
# retransmits of what was nacked overloaded/scorer_unavailable, retry:true) and stored once.
# Afterwards every daemon is still up and answers /healthz, their peak RSS stayed under
# KP_HOSTILE_RSS_MB, every valid observation is in kp_observation exactly once, and every
# observation-level refusal is one kp_rejection row with its code.
# Environment: KP_BUILD_DIR, KP_SOURCE_DIR, KP_HOSTILE_CLIENT (set by CTest).
set -euo pipefail
: "${KP_BUILD_DIR:?set by CTest}" "${KP_SOURCE_DIR:?set by CTest}"
CLIENT=${KP_HOSTILE_CLIENT:-$KP_BUILD_DIR/tests/hostile/hostile_client}
RSS_MB=${KP_HOSTILE_RSS_MB:-200}
export KP_INSECURE=1 # the client speaks plain ZeroMQ: this suite is about parsing, not CURVE
. "$KP_SOURCE_DIR/tests/harness/pg.sh"
. "$KP_SOURCE_DIR/tests/harness/cluster.sh"

work=$(mktemp -d /tmp/kp-hostile.XXXXXX)
chmod 755 "$work"
sampler=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    kp_cluster_stop_all 2>/dev/null || true
    if [ $rc -ne 0 ]; then
        echo "---- FAILED ($rc); daemon logs (tail):"
        for f in "$work"/logs/*.log; do
            [ -e "$f" ] || continue
            echo "== $f"
            tail -n 20 "$f" | cut -c1-400
        done
    fi
    kp_pg_destroy "$work/pg" >/dev/null 2>&1 || true
    [ $rc -eq 0 ] && rm -rf "$work"
    exit $rc
}
trap cleanup EXIT INT TERM
check() {
    if [ "$2" = "$3" ]; then echo "ok: $1 ($2)"; else echo "FAIL: $1: got '$2', want '$3'" >&2; exit 1; fi
}

kp_pg_start "$work/pg" "$(kp_pg_free_port)" >/dev/null
DSN=$(kp_pg_dsn "$work/pg" kaoping)
q() { psql -X -tA -v ON_ERROR_STOP=1 "$DSN" -c "$1"; }
kp_cluster_init "$work" "$KP_BUILD_DIR" "$KP_SOURCE_DIR" \
    "$KP_SOURCE_DIR/schemas/schemes/anshan-2015.yaml" "$DSN"
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_scheme WHERE scheme = 'anshan-2015'" 1 60 >/dev/null
for i in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://$(kp_cluster_admin scorer)/readyz")" = 200 ] && break
    sleep 0.1
done

rss() { awk '/^VmRSS:/ {print int($2 / 1024)}' "/proc/$(cat "$work/pids/$1")/status"; }
for d in collector broker scorer; do echo "RSS before: $d $(rss $d) MB"; done
(
    declare -A peak=([collector]=0 [broker]=0 [scorer]=0)
    while :; do
        for d in collector broker scorer; do
            v=$(awk '/^VmRSS:/ {print $2}' "/proc/$(cat "$work/pids/$d")/status" 2>/dev/null || echo 0)
            [ "$v" -gt "${peak[$d]}" ] && peak[$d]=$v
        done
        printf '%s %s\n' collector "${peak[collector]}" broker "${peak[broker]}" scorer "${peak[scorer]}" >"$work/peak.tmp"
        mv "$work/peak.tmp" "$work/peak"
        sleep 0.1
    done
) &
sampler=$!

t0=$(date +%s)
out=$("$CLIENT" "tcp://127.0.0.1:$KP_COL_PORT" hostile anshan-2015 4194304 10000 "$work/rej.tsv") || {
    echo "$out"
    echo "FAIL: the hostile client reported failures" >&2
    exit 1
}
echo "$out"
echo "client: $(($(date +%s) - t0)) s"
valid=$(echo "$out" | sed -n 's/.*valid_obs=\([0-9]*\).*/\1/p')
flood=$(echo "$out" | sed -n 's/.*flood_obs=\([0-9]*\).*/\1/p')

for d in collector broker scorer; do
    check "$d is still running" "$(kp_cluster_alive $d && echo up || echo down)" up
    check "$d answers /healthz" "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$(kp_cluster_admin $d)/healthz")" 200
done
sleep 0.3
for d in collector broker scorer; do
    peak=$(awk -v k=$d '$1 == k {print int($2 / 1024)}' "$work/peak")
    echo "RSS after: $d $(rss $d) MB, peak $peak MB (bound $RSS_MB MB)"
    [ "$peak" -le "$RSS_MB" ] || { echo "FAIL: $d peak RSS $peak MB above $RSS_MB MB" >&2; exit 1; }
done

check "every valid observation stored, once" \
    "$(q "SELECT count(*) FROM observation WHERE adapter = 'hostile'")" "$valid"
check "every batch of the valid flood stored, once" \
    "$(q "SELECT count(*) FROM observation WHERE adapter = 'hostile-flood'")" "$flood"
check "no (src, ref, rev) twice" "$(q "SELECT count(*) - count(DISTINCT (src, ref, rev)) FROM observation")" 0
q "CREATE TABLE it_rej (seq numeric, n int, code text)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$DSN" -c "\\copy it_rej FROM '$work/rej.tsv'"
n_rej=$(q "SELECT count(*) FROM it_rej")
check "every observation-level refusal is one kp_rejection row with its code" \
    "$(q "SELECT count(*) FROM it_rej i JOIN kp_rejection r ON r.adapter = 'hostile' AND r.seq = i.seq AND r.n = i.n AND r.code = i.code")" "$n_rej"
check "no other rejection" "$(q "SELECT count(*) FROM kp_rejection WHERE adapter = 'hostile'")" "$n_rej"
echo "hostile_suite: valid_obs=$valid rejections=$n_rej collector_nacks=$(curl -s "http://$(kp_cluster_admin collector)/metrics" | awk '/^kaoping_collector_nacks_total/ {s += $2} END {print s + 0}')"
echo "hostile_suite: all checks passed"
