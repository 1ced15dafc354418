#!/usr/bin/env bash
# Scenario: operations metrics (issue 8). A real Prometheus (the Debian package) scrapes the
# local cluster of the main job (the same tests/harness/cluster.sh set-up as
# deploy/run-local.sh) with the alerting rules of deploy/prometheus: every target is up,
# every rule evaluates, and a counter seen through Prometheus moves when rows arrive. Then
# each listed metric of every daemon is shown to move when the event it counts happens
# (scraped from /metrics directly): rows pulled, batches sent/acked/nacked, spool depth and
# age, last success, watermark lag; collector batches by outcome and connected adapters;
# broker batches routed and per-scheme scorer liveness; scorer observations stored,
# rejections by code, commit-latency and batch-size histograms, alerts by state and
# PostgreSQL errors; and /readyz follows the dependencies.
. "$(dirname "$0")/lib.sh"

command -v prometheus >/dev/null || { echo "FAIL: prometheus is not installed (deploy/install-deps.sh)" >&2; exit 1; }

# metric NAME SERIES: the value of one series on a daemon's /metrics ("" when absent)
metric() {
    local body
    body=$(curl -fsS --max-time 3 "http://$(kp_cluster_admin "$1")/metrics" 2>/dev/null) || return 0
    printf '%s\n' "$body" | awk -v s="$2" 'index($0, s " ") == 1 && !done { print $2; done = 1 }'
}
readyz() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$(kp_cluster_admin "$1")/readyz" || true; }
# wait_metric NAME SERIES OP VALUE [SECONDS]: until the series compares (awk OP) with VALUE
wait_metric() {
    local name=$1 series=$2 op=$3 want=$4 secs=${5:-30} got="" i
    for i in $(seq 1 $((secs * 5))); do
        got=$(metric "$name" "$series")
        if [ -n "$got" ] && awk -v g="$got" -v w="$want" "BEGIN { exit !(g + 0 $op w + 0) }"; then
            echo "ok: $name $series = $got ($op $want)"
            return 0
        fi
        sleep 0.2
    done
    echo "FAIL: $name $series: got '$got', want $op $want" >&2
    exit 1
}
wait_ready() { # NAME CODE
    local i
    for i in $(seq 1 150); do [ "$(readyz "$1")" = "$2" ] && { echo "ok: $1 /readyz $2"; return 0; }; sleep 0.2; done
    echo "FAIL: $1 /readyz: got $(readyz "$1"), want $2" >&2
    exit 1
}

kp_cluster_adapter stats stats "$SDSN" "$KP_SOURCE_DIR/deploy/sim/department_query.sql" \
    "ack_timeout_ms: 1000
retry_max_ms: 2000"
for d in broker collector scorer adapter-stats; do kp_cluster_start "$d"; done
for d in broker collector scorer adapter-stats; do wait_ready "$d" 200; done

# ---- a real Prometheus -------------------------------------------------------------------
prom_port=$(kp_pg_free_port)
kp_cluster_prometheus_config "$it_work/prometheus.yml" 1s
prometheus --config.file="$it_work/prometheus.yml" --storage.tsdb.path="$it_work/prom" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$it_work/logs/prometheus.log" 2>&1 &
echo $! >"$KP_WORK/pids/prometheus"
api() { curl -fsS --max-time 5 "http://127.0.0.1:$prom_port/api/v1/$1" 2>/dev/null || true; }
# promq EXPR: the value of an instant query's first sample
promq() {
    curl -fsS --max-time 5 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
        sed -n 's/.*"value":\[[0-9.]*,"\([^"]*\)"\].*/\1/p' | head -n 1
}
for i in $(seq 1 150); do
    t=$(api targets)
    [ "$(printf '%s' "$t" | grep -o '"health":"up"' | wc -l)" -eq 4 ] && break
    sleep 0.2
done
check "Prometheus: 4 active targets" "$(printf '%s' "$t" | grep -o '"scrapeUrl"' | wc -l)" 4
check "Prometheus: every target up" "$(printf '%s' "$t" | grep -o '"health":"up"' | wc -l)" 4
check "Prometheus: no target down" "$(printf '%s' "$t" | grep -o '"health":"down"' | wc -l)" 0
for i in $(seq 1 50); do
    r=$(api rules)
    [ "$(printf '%s' "$r" | grep -o '"health":"ok"' | wc -l)" -eq 17 ] && break
    sleep 0.2
done
check "Prometheus: every rule evaluates" "$(printf '%s' "$r" | grep -o '"health":"ok"' | wc -l)" 17
for i in $(seq 1 50); do [ -n "$(promq kaoping_scorer_observations_stored_total)" ] && break; sleep 0.2; done
before=$(promq kaoping_scorer_observations_stored_total)
check "Prometheus sees the scorer's counter" "$([ -n "$before" ] && echo yes)" yes
check "Prometheus sees the adapter's info" "$(promq 'count(kaoping_adapter_info{aid="stats",scheme="anshan-2015"})')" 1

# ---- events and the metrics that count them ------------------------------------------------
rows0=$(metric adapter-stats kaoping_adapter_rows_pulled_total)
sent0=$(metric adapter-stats kaoping_adapter_batches_sent_total)
acked0=$(metric adapter-stats kaoping_adapter_batches_acked_total)
fwd0=$(metric collector 'kaoping_collector_batches_total{outcome="forwarded"}')
routed0=$(metric broker kaoping_broker_batches_routed_total)
rej0=$(metric scorer 'kaoping_scorer_rejections_total{code="unknown_unit"}')
commits0=$(metric scorer kaoping_scorer_commit_seconds_count)
sizes0=$(metric scorer kaoping_scorer_batch_size_count)
t0=$(date +%s)
qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES
  ('AS-HC','gdp_growth','2015-03',12), ('AS-TA','gdp_growth','2015-03',9),
  ('AS-XY','gdp_growth','2015-03',7), ('NO-SUCH-UNIT','gdp_growth','2015-03',7)"
kp_wait_sql "$DSN" "SELECT count(*) FROM observation" 3 60
wait_metric adapter-stats kaoping_adapter_rows_pulled_total '>=' $((rows0 + 4))
wait_metric adapter-stats kaoping_adapter_batches_sent_total '>' "$sent0"
wait_metric adapter-stats kaoping_adapter_batches_acked_total '>' "$acked0"
wait_metric adapter-stats kaoping_adapter_last_success_timestamp_seconds '>=' "$t0"
wait_metric adapter-stats kaoping_adapter_observations_rejected_total '>=' 1
wait_metric adapter-stats kaoping_adapter_spool_depth '==' 0
wait_metric adapter-stats kaoping_adapter_watermark_lag_seconds '>' 0
wait_metric collector 'kaoping_collector_batches_total{outcome="forwarded"}' '>' "$fwd0"
wait_metric collector kaoping_collector_adapters_connected '==' 1
wait_metric collector kaoping_collector_broker_connected '==' 1
wait_metric broker kaoping_broker_batches_routed_total '>' "$routed0"
wait_metric broker 'kaoping_broker_scorer_live{scheme="anshan-2015"}' '==' 1
wait_metric broker kaoping_broker_schemes_live '==' 1
wait_metric broker kaoping_broker_collectors_connected '==' 1
wait_metric broker kaoping_broker_scorers_connected '==' 1
wait_metric scorer kaoping_scorer_observations_stored_total '>=' 3
wait_metric scorer 'kaoping_scorer_rejections_total{code="unknown_unit"}' '==' $((rej0 + 1))
wait_metric scorer kaoping_scorer_commit_seconds_count '>' "$commits0"
wait_metric scorer kaoping_scorer_batch_size_count '>' "$sizes0"
wait_metric scorer 'kaoping_scorer_batches_total{outcome="committed"}' '>=' 1
wait_metric scorer kaoping_scorer_broker_connected '==' 1
# ... and through Prometheus.
after=""
for i in $(seq 1 50); do
    after=$(promq kaoping_scorer_observations_stored_total)
    awk -v a="$after" -v b="$before" 'BEGIN { exit !(a + 0 >= b + 3) }' && break
    sleep 0.2
done
check "Prometheus: observations stored moved by 3" "$(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }')" 3

# Alerts by state: the gauges follow the alert table (refreshed every 10 heartbeats).
q "INSERT INTO alert (scheme, rule, severity, state, summary) VALUES
   ('anshan-2015', 'it', 'warning', 'firing', 'test'), ('anshan-2015', 'it', 'warning', 'resolved', 'test')" >/dev/null
wait_metric scorer 'kaoping_scorer_alerts{scheme="anshan-2015",state="firing"}' '==' 1 30
wait_metric scorer 'kaoping_scorer_alerts{scheme="anshan-2015",state="resolved"}' '==' 1 30
wait_metric scorer 'kaoping_scorer_alerts{scheme="anshan-2015",state="pending"}' '==' 0 5

# The scorer dies: the broker marks the scheme dead and nacks; the adapter's batch is nacked
# for retry and waits in the spool, growing old; /readyz of the broker follows.
kp_cluster_kill scorer KILL
nacked0=$(metric adapter-stats 'kaoping_adapter_batches_nacked_total{code="scorer_unavailable"}')
qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES ('AS-TD','gdp_growth','2015-03',9)"
wait_metric broker 'kaoping_broker_scorer_live{scheme="anshan-2015"}' '==' 0
wait_metric broker 'kaoping_broker_nacks_total{code="scorer_unavailable"}' '>=' 1
wait_metric adapter-stats 'kaoping_adapter_batches_nacked_total{code="scorer_unavailable"}' '>' "${nacked0:-0}"
wait_metric adapter-stats kaoping_adapter_retransmits_total '>=' 1
wait_metric adapter-stats kaoping_adapter_spool_depth '==' 1
wait_metric adapter-stats kaoping_adapter_spool_oldest_age_seconds '>=' 1
wait_ready broker 503
for i in $(seq 1 50); do
    t=$(api targets)
    [ "$(printf '%s' "$t" | grep -o '"health":"down"' | wc -l)" -eq 1 ] && break
    sleep 0.2
done
check "Prometheus sees the scorer down" "$(printf '%s' "$t" | grep -o '"health":"down"' | wc -l)" 1
kp_cluster_start scorer
wait_ready scorer 200
wait_ready broker 200
wait_metric adapter-stats kaoping_adapter_spool_depth '==' 0
kp_wait_sql "$DSN" "SELECT count(*) FROM observation" 4 60

# PostgreSQL goes away: the scorer's next statement fails; db_up drops, pg_errors moves; the
# adapter's source fails too (the department database lives in the same cluster).
pg_errors0=$(metric scorer kaoping_scorer_pg_errors_total)
src_err0=$(metric adapter-stats kaoping_adapter_source_errors_total)
kp_pg_stop "$it_work/pg" >/dev/null
wait_metric scorer kaoping_scorer_db_up '==' 0 40
wait_metric scorer kaoping_scorer_pg_errors_total '>' "$pg_errors0"
wait_metric adapter-stats kaoping_adapter_source_errors_total '>' "$src_err0"
wait_ready scorer 503
wait_ready adapter-stats 503
kp_pg_start "$it_work/pg" "$(cat "$it_work/pg/port")" >/dev/null
wait_metric scorer kaoping_scorer_db_up '==' 1 60
wait_ready scorer 200
wait_ready adapter-stats 200

# The broker dies: the collector loses it (gauge and /readyz).
kp_cluster_kill broker KILL
wait_metric collector kaoping_collector_broker_connected '==' 0
wait_ready collector 503
kp_cluster_start broker
wait_metric collector kaoping_collector_broker_connected '==' 1
wait_ready collector 200
echo "prometheus_scrape: all checks passed"
