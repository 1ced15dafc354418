#!/usr/bin/env bash
# Scenario (issue 4, ARCHITECTURE.md guarantees 1-2): kill -9 of the real kp-adapter at
# random points loses and duplicates nothing. The simulated e-supervision system streams
# thousands of cases a day (with revisions: cases completing after they were read as open
# and overdue, stage records arriving late) while kp-adapter, on the esup profile with small
# batches, is SIGKILLed 12 times at random moments and restarted, sometimes at once,
# sometimes after a pause. Afterwards every case in the source is in kp_observation with its
# latest revision, nothing the source does not have is there, no observation was sent twice
# (Σ n_obs of the committed batches = stored observations: a batch re-read after a kill
# under a new seq would show here, since the scorer's (src, ref, rev) uniqueness would
# otherwise hide it) and the spool is empty.
. "$(dirname "$0")/lib.sh"
. "$KP_SOURCE_DIR/deploy/sim/esup.sh"

kills=${KP_KILLS:-12}
per_day=${KP_ESUP_PER_DAY:-400}

sim_esup_start "$it_work"
ES=$SIM_ESUP_DSN
qe() { psql -X -tA -v ON_ERROR_STOP=1 "$ES" -c "$1"; }

# Small batches and a short poll, so that a kill lands among many spool writes, acks and
# source reads; a short lag keeps the stream close behind the simulator.
kp_cluster_adapter_profile esup "$KP_SOURCE_DIR/deploy/profiles/esup.yaml" SOURCE_DSN="$ES" \
    "batch_max_obs: 40" "ack_timeout_ms: 1s" "retry_max_ms: 2s" "source.poll_ms: 100ms" \
    "source.lag_ms: 1500ms"
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_cluster_start adapter-esup

# The simulator writes two months in the background, one transaction per simulated day with
# a short pause after each, so that the stream lasts through the kills.
(
    export SIM_ESUP_DAY_PAUSE=0.25
    sim_esup_step 2015-03 "$per_day"
    sim_esup_step 2015-04 "$per_day"
) >"$it_work/logs/sim.log" 2>&1 &
sim=$!

# Kill only once the stream flows (the first simulated days publish little).
for i in $(seq 1 300); do
    [ "$(q "SELECT count(*) > 0 FROM observation")" = t ] && break
    sleep 0.2
done
rnd() { awk -v s="$RANDOM" -v lo="$1" -v hi="$2" 'BEGIN { srand(s); printf "%.2f", lo + rand() * (hi - lo) }'; }
# Kill at random moments as long as the simulator writes, and at least $kills times.
k=0
during=0
while [ "$k" -lt "$kills" ] || kill -0 "$sim" 2>/dev/null; do
    sleep "$(rnd 0.3 1.5)"
    kill -0 "$sim" 2>/dev/null && during=$((during + 1))
    kp_cluster_kill adapter-esup KILL
    k=$((k + 1))
    echo "kill $k: $(q "SELECT count(*) FROM observation") observations stored so far"
    sleep "$(rnd 0 0.5)"
    kp_cluster_start adapter-esup
done
wait "$sim"
check "the simulator finished" "$?" 0
check "at least $kills kills while the source was being written" \
    "$(awk -v d="$during" -v k="$kills" 'BEGIN { print (d >= k) }')" 1
kills=$k

n=$(qe "SELECT count(*) FROM approval_case")
echo "adapter_kill9: $n cases in the source, $(qe "SELECT sum(revision) FROM approval_case") revisions"
check "a large stream" "$(awk -v n="$n" 'BEGIN { print (n >= 10000) }')" 1
kp_wait_sql "$DSN" "SELECT count(DISTINCT ref) FROM observation WHERE src = 'esup'" "$n" 240
psql -X -q -v ON_ERROR_STOP=1 "$ES" \
    -c "\\copy (SELECT e.case_no, e.revision, e.ontime, e.period, e.unit_code FROM approval_case_event e) TO '$it_work/esup-src.tsv'"
q "CREATE TABLE it_src (ref text PRIMARY KEY, rev int, val int, period text, unit text)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$DSN" -c "\\copy it_src FROM '$it_work/esup-src.tsv'"
kp_wait_sql "$DSN" "SELECT count(*) FROM it_src s
                     WHERE s.rev = (SELECT max(rev) FROM observation o WHERE o.ref = s.ref)" "$n" 120
check "every case's latest revision stored, with the source's value and cell" \
    "$(q "SELECT count(*) FROM it_src s JOIN observation o ON o.ref = s.ref AND o.rev = s.rev
           WHERE o.value = s.val AND o.period = s.period AND o.unit = s.unit")" "$n"
check "nothing the source does not have" \
    "$(q "SELECT count(*) FROM observation o WHERE NOT EXISTS (SELECT 1 FROM it_src s WHERE s.ref = o.ref)")" 0
check "no revision newer than the source's" \
    "$(q "SELECT count(*) FROM observation o JOIN it_src s ON s.ref = o.ref WHERE o.rev > s.rev")" 0
check "nothing sent twice (observations = Σ n_obs of the committed batches)" \
    "$(q "SELECT count(*) FROM observation")" "$(q "SELECT sum(n_obs) FROM batch WHERE adapter = 'esup'")"
check "no batch applied twice" "$(q "SELECT count(*) - count(DISTINCT (adapter, seq)) FROM batch")" 0
check "no rejections" "$(q "SELECT count(*) FROM rejection")" 0
# The rates equal a recomputation from the source's latest revisions.
check "every monthly approval_ontime rate equals the recomputation" \
    "$(q "WITH r AS (SELECT unit, period, 100.0 * sum(val) / count(*) AS rate, count(*) AS n
                     FROM it_src GROUP BY unit, period)
          SELECT count(*) FROM r JOIN kp_indicator_score s
              ON s.unit = r.unit AND s.period = r.period AND s.indicator = 'approval_ontime'
           WHERE abs(s.value - r.rate) < 1e-9 AND s.n_obs = r.n")" \
    "$(q "SELECT count(DISTINCT (unit, period)) FROM it_src")"
# The last acks may still be on their way.
for i in $(seq 1 50); do
    left=$(sqlite3 "$it_work/spool/esup.db" "SELECT count(*) FROM batch" 2>/dev/null || echo unreadable)
    [ "$left" = 0 ] && break
    sleep 0.2
done
check "the adapter's spool is empty" "$left" 0
check "the adapter was started $((kills + 1)) times" \
    "$(grep -c ' code=started ' "$it_work/logs/adapter-esup.log")" "$((kills + 1))"
echo "adapter_kill9: batches=$(q "SELECT count(*) FROM batch") observations=$(q "SELECT count(*) FROM observation")"
echo "adapter_kill9: all checks passed"
