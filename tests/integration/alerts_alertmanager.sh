#!/usr/bin/env bash
# Scenario (issue 7): near-real-time alerts of the Anshan 2015 scheme's ladders, from scripted
# observations to a real Alertmanager (prometheus-alertmanager, started here on free ports),
# on a controllable clock (KP_FAKE_NOW_FILE, scorer/scr_alert.h): progress_lag fires yellow,
# escalates to red (the yellow resolves), holds through a revision (keep_firing_for) and
# resolves; report_missing, node_overdue (a case with x.due) and source_stale follow the clock;
# deduction events fire at once; every transition is a kp_alert row, a NOTIFY kaoping_alert and
# a `kpctl tap` line; Alertmanager shows the alerts with the right labels and a stable startsAt,
# its inhibit rule mutes a yellow under a red, and after a restart of Alertmanager (its memory
# empty) and of the scorer every firing alert comes back without duplicates.
export KP_INSECURE=1 # the scripted client speaks plain TCP (CURVE is issue 6's scenarios)
. "$(dirname "$0")/lib.sh"

AM_BIN=${KP_ALERTMANAGER:-/usr/bin/prometheus-alertmanager}
if [ ! -x "$AM_BIN" ]; then
    echo "alerts_alertmanager: $AM_BIN not found: deploy/install-deps.sh installs prometheus-alertmanager" >&2
    exit 1
fi
AM_CONF=$KP_SOURCE_DIR/deploy/alertmanager/alertmanager.yml
if command -v amtool >/dev/null 2>&1; then
    amtool check-config "$AM_CONF" >/dev/null
    echo "ok: amtool check-config deploy/alertmanager/alertmanager.yml"
fi
CLIENT=$KP_BUILD_DIR/tests/bench/bench_alert_latency
KPCTL=$KP_BUILD_DIR/kpctl/kpctl
AM_PORT=$(kp_pg_free_port)
AM=http://127.0.0.1:$AM_PORT
PUB=tcp://127.0.0.1:$(kp_pg_free_port)
export KP_FAKE_NOW_FILE=$it_work/now

set_clock() { # "YYYY-MM-DD HH:MM" Beijing time
    echo $(($(date -d "$1 +0800" +%s) * 1000)) >"$KP_FAKE_NOW_FILE"
}

am_start() {
    mkdir -p "$it_work/am"
    "$AM_BIN" --config.file="$AM_CONF" --storage.path="$it_work/am" \
        --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= \
        >>"$it_work/logs/alertmanager.log" 2>&1 &
    echo $! >"$KP_WORK/pids/alertmanager"
    local i
    for i in $(seq 1 150); do
        curl -fsS "$AM/-/ready" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "alertmanager did not become ready" >&2
    return 1
}

send() { # AID SRC OBS...
    local aid=$1 src=$2
    shift 2
    "$CLIENT" send --collector "tcp://127.0.0.1:$KP_COL_PORT" --aid "$aid" --scheme anshan-2015 \
        --src "$src" "$@" >/dev/null
}

am() { "$CLIENT" am --am "$AM" "$@"; }

# wait_am WANT_COUNT MATCHER...: until Alertmanager holds that many active alerts matching
wait_am() {
    local want=$1 got="" i
    shift
    for i in $(seq 1 150); do
        got=$(am "$@" 2>/dev/null | wc -l) || got=err
        [ "$got" = "$want" ] && return 0
        sleep 0.1
    done
    echo "wait_am: want $want alerts matching $*, got $got:" >&2
    am "$@" >&2 || true
    return 1
}

wait_file() { # FILE PATTERN
    local i
    for i in $(seq 1 100); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "wait_file: no \"$2\" in $1:" >&2
    tail -n 20 "$1" >&2 || true
    return 1
}

alert_row() { # RULE SEVERITY UNIT INDICATOR PERIOD: the state of the latest occurrence
    q "SELECT state FROM kp_alert WHERE scheme = 'anshan-2015' AND rule = '$1' AND severity = '$2'
         AND unit IS NOT DISTINCT FROM nullif('$3', '') AND indicator IS NOT DISTINCT FROM nullif('$4', '')
         AND period IS NOT DISTINCT FROM nullif('$5', '') ORDER BY id DESC LIMIT 1"
}
wait_row() { # RULE SEVERITY UNIT INDICATOR PERIOD WANT_STATE
    local i got=""
    for i in $(seq 1 150); do
        got=$(alert_row "$1" "$2" "$3" "$4" "$5")
        [ "$got" = "$6" ] && return 0
        sleep 0.1
    done
    echo "wait_row: $1 $2 $3 $4 $5: want $6, got '$got'" >&2
    q "SELECT id, rule, severity, unit, indicator, period, state FROM kp_alert ORDER BY id DESC LIMIT 20" >&2
    return 1
}

# ---- start: the clock at 2015-06-19 00:00, 60% of June gone --------------------------------
set_clock "2015-06-19 00:00"
cat >>"$KP_WORK/etc/scorer.yaml" <<YAML
alerts:
  pub: $PUB
  alertmanager_url: $AM
  tick_ms: 200ms
  resend_ms: 1s
  resolved_resend_ms: 10s
YAML
am_start
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_scheme" 1 60
for i in $(seq 1 100); do
    curl -fsS "http://$(kp_cluster_admin scorer)/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
"$KPCTL" tap --pub "$PUB" --timeout 240 >"$it_work/tap.out" 2>"$it_work/tap.err" &
TAP_PID=$!
sleep 0.5 # the SUB socket connects

# ---- progress_lag: yellow ------------------------------------------------------------------
# 台安县 reports 45% of its task nodes done: 60 - 45 = 15 points behind the elapsed share.
send tasks tasks AS-TA,process,2015-06,45,proc-ta-06
wait_row process_lag yellow AS-TA process 2015-06 firing
check "yellow fired at the (test) clock's time" \
    "$(q "SELECT to_char(fired_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD HH24:MI') || ' ' || kind
           || ' ' || (labels->>'alertname') FROM kp_alert WHERE rule = 'process_lag' AND unit = 'AS-TA'")" \
    "2015-06-19 00:00 progress_lag process_lag"
wait_am 1 'alertname="process_lag"' 'unit="AS-TA"'
LINE=$(am 'alertname="process_lag"' 'unit="AS-TA"')
check "Alertmanager labels of the yellow" \
    "$(echo "$LINE" | sed 's/ startsAt=.*//')" \
    "alertname=process_lag indicator=process period=2015-06 scheme=anshan-2015 severity=yellow unit=AS-TA"
case $LINE in *"startsAt=2015-06-18T16:00:"*) echo "ok: startsAt is the first firing time" ;;
    *) echo "FAIL: startsAt: $LINE" >&2; exit 1 ;; esac
wait_file "$it_work/tap.out" "alert anshan-2015 firing   yellow process_lag"
wait_file "$it_work/tap.out" "score anshan-2015 2015-06 AS-TA"
echo "ok: kpctl tap shows the transition and the score change"

# ---- escalation yellow → red on the clock; NOTIFY ------------------------------------------
psql -X -q "$DSN" -c "LISTEN kaoping_alert" -c "SELECT pg_sleep(4)" >"$it_work/listen.out" 2>&1 &
LISTEN_PID=$!
sleep 0.5
set_clock "2015-06-28 00:00" # 90% gone: 45 behind
wait_row process_lag red AS-TA process 2015-06 firing
wait_row process_lag yellow AS-TA process 2015-06 resolved
check "escalation: one yellow occurrence resolved when the red fired" \
    "$(q "SELECT count(*) || ' ' || bool_and(resolved_at = (SELECT fired_at FROM alert WHERE rule = 'process_lag'
           AND unit = 'AS-TA' AND severity = 'red')) FROM alert WHERE rule = 'process_lag' AND unit = 'AS-TA' AND severity = 'yellow'")" \
    "1 true"
wait_am 1 'alertname="process_lag"' 'unit="AS-TA"' 'severity="red"'
wait_am 0 'alertname="process_lag"' 'unit="AS-TA"' 'severity="yellow"'
wait "$LISTEN_PID" || true
grep -q 'Asynchronous notification "kaoping_alert" with payload ".*"rule" *: *"process_lag".*"severity" *: *"red".*"state" *: *"firing"' "$it_work/listen.out" ||
    { echo "FAIL: no NOTIFY kaoping_alert for the red" >&2; cat "$it_work/listen.out" >&2; exit 1; }
echo "ok: NOTIFY kaoping_alert announced the escalation"

# ---- the inhibit rule of deploy/alertmanager: red mutes yellow of the same labels ------------
NOW_ISO=$(date -u +%Y-%m-%dT%H:%M:%SZ)
END_ISO=$(date -u -d '+5 min' +%Y-%m-%dT%H:%M:%SZ)
for sev in red yellow; do
    curl -fsS -XPOST -H 'Content-Type: application/json' "$AM/api/v2/alerts" -d "[{\"labels\":{
        \"alertname\":\"inhibit_probe\",\"scheme\":\"anshan-2015\",\"severity\":\"$sev\",\"unit\":\"AS-QS\",
        \"indicator\":\"total\",\"period\":\"2015-06\"},\"startsAt\":\"$NOW_ISO\",\"endsAt\":\"$END_ISO\"}]" >/dev/null
done
for i in $(seq 1 100); do
    am 'alertname="inhibit_probe"' 'severity="yellow"' | grep -q 'state=suppressed inhibited=1' && break
    sleep 0.1
done
check "inhibit rule: the yellow under a red is suppressed" \
    "$(am 'alertname="inhibit_probe"' | sed 's/.*severity=\([a-z]*\).* state=\(.*\)/\1 \2/' | sort | tr '\n' ';')" \
    "red active inhibited=0;yellow suppressed inhibited=1;"

# ---- report_missing with working days; its resolution by the report --------------------------
# May's statistics were due 5 working days after the month (06-05), red 2 later (after 06-09).
wait_row stats_missing red AS-HC gdp_growth 2015-05 firing
wait_am 1 'alertname="stats_missing"' 'unit="AS-HC"' 'indicator="gdp_growth"' 'period="2015-05"' 'severity="red"'
send stats stats AS-HC,gdp_growth,2015-05,8.5,siv-hc-05
wait_row stats_missing red AS-HC gdp_growth 2015-05 resolved
wait_am 0 'alertname="stats_missing"' 'unit="AS-HC"' 'indicator="gdp_growth"' 'period="2015-05"'
echo "ok: report_missing red, resolved by the report"

# ---- hysteresis: a revision clears the lag, the red holds keep_firing_for (10m) -------------
send tasks tasks AS-TA,process,2015-06,95,proc-ta-06,1
sleep 1.5
check "the red holds through the revision" "$(alert_row process_lag red AS-TA process 2015-06)" firing
check "no new yellow meanwhile" \
    "$(q "SELECT count(*) FROM alert WHERE rule = 'process_lag' AND unit = 'AS-TA' AND severity = 'yellow'")" 1
set_clock "2015-06-28 00:11"
wait_row process_lag red AS-TA process 2015-06 resolved
wait_am 0 'alertname="process_lag"' 'unit="AS-TA"'
echo "ok: resolved after keep_firing_for; gone from Alertmanager"

# ---- source_stale: the stats adapter silent for 11 minutes of the clock ----------------------
wait_row stats_stale yellow "" "" "" firing
wait_am 1 'alertname="stats_stale"' 'adapter="stats"' 'src="stats"' 'severity="yellow"'
echo "ok: source_stale"

# ---- node_overdue: an approval case due 06-20 17:00 with x.due -------------------------------
# red card 2 working days after the due day: 06-22 is the Dragon Boat holiday, so after 06-24.
send esup esup 'AS-TD,approval_ontime,2015-06,0,case-0620-1,0,{"due":"2015-06-20T17:00:00+08:00"}'
wait_row approval_overdue red AS-TD approval_ontime 2015-06 firing
wait_am 1 'alertname="approval_overdue"' 'unit="AS-TD"' 'severity="red"'
send esup esup 'AS-TD,approval_ontime,2015-06,0,case-0620-1,1,{"due":"2015-06-20T17:00:00+08:00","done":true}'
wait_row approval_overdue red AS-TD approval_ontime 2015-06 resolved
echo "ok: node_overdue from x.due, resolved when done"

# ---- deduction events, and Alertmanager restarted with an empty memory ---------------------
send office office AS-TA,criticism,2015-06,1,crit-ta-1
wait_row deduction yellow AS-TA criticism 2015-06 firing
wait_am 1 'alertname="deduction"' 'unit="AS-TA"'
STARTS=$(am 'alertname="deduction"' 'unit="AS-TA"' | sed 's/.*startsAt=\([^ ]*\).*/\1/')
kp_cluster_kill alertmanager TERM
rm -rf "$it_work/am" # nothing survives: the scorer must send everything again
# while Alertmanager is down: a falsification case (10 points, red at once)
send office office AS-XY,falsification,2015-06,1,fals-xy-1
wait_row deduction red AS-XY falsification 2015-06 firing
sleep 1.5
am_start
wait_am 1 'alertname="deduction"' 'unit="AS-TA"' 'severity="yellow"'
wait_am 1 'alertname="deduction"' 'unit="AS-XY"' 'severity="red"'
check "startsAt unchanged across the Alertmanager restart" \
    "$(am 'alertname="deduction"' 'unit="AS-TA"' | sed 's/.*startsAt=\([^ ]*\).*/\1/')" "$STARTS"
wait_am 1 'alertname="stats_stale"' 'adapter="stats"'
check "every firing alert of kp_alert is back in Alertmanager" \
    "$(am 'scheme="anshan-2015"' | wc -l)" \
    "$(q "SELECT count(*) FROM kp_alert WHERE state = 'firing'")"

# ---- kpctl alerts --------------------------------------------------------------------------
# Here-strings, not pipes: grep -q stops at the first match, and under pipefail the writer's
# SIGPIPE would fail the check (seen in CI).
OUT=$(KP_DSN=$DSN "$KPCTL" alerts anshan-2015)
grep -Eq "firing +red +deduction +AS-XY" <<<"$OUT" ||
    { echo "FAIL: kpctl alerts:" >&2; echo "$OUT" >&2; exit 1; }
grep -q "process_lag" <<<"$OUT" && { echo "FAIL: kpctl alerts lists a resolved alert" >&2; exit 1; }
OUT=$(KP_DSN=$DSN "$KPCTL" alerts anshan-2015 --all)
grep -Eq "resolved +(red|yellow) +process_lag +AS-TA" <<<"$OUT" ||
    { echo "FAIL: kpctl alerts --all" >&2; exit 1; }
echo "ok: kpctl alerts"

# ---- the scorer restarted: open alerts restored, nothing duplicated or re-fired --------------
# (source_stale aside: the restarted scorer reads the adapters' last batch times from `batch`,
# which holds the real clock, so the test clock's jumps do not survive a restart)
FIRING=$(q "SELECT string_agg(id || ':' || fired_at, ',' ORDER BY id) FROM alert WHERE state = 'firing' AND kind <> 'source_stale'")
kp_cluster_kill scorer TERM
kp_cluster_start scorer
wait_file "$KP_WORK/logs/scorer.log" "code=alerts_loaded scheme=anshan-2015"
sleep 1
check "the same firing rows after the restart" \
    "$(q "SELECT string_agg(id || ':' || fired_at, ',' ORDER BY id) FROM alert WHERE state = 'firing' AND kind <> 'source_stale'")" "$FIRING"
check "one open occurrence per identity" \
    "$(q "SELECT count(*) = count(DISTINCT (scheme, fingerprint)) FROM alert WHERE state IN ('pending', 'firing')")" t
wait_am 1 'alertname="deduction"' 'unit="AS-TA"'
check "startsAt unchanged across the scorer restart" \
    "$(am 'alertname="deduction"' 'unit="AS-TA"' | sed 's/.*startsAt=\([^ ]*\).*/\1/')" "$STARTS"
check "Alertmanager confirmed every firing alert" \
    "$(q "SELECT count(*) FILTER (WHERE am_state IS DISTINCT FROM 'firing') FROM alert WHERE state = 'firing'")" 0

kill "$TAP_PID" 2>/dev/null || true
echo "alerts_alertmanager: all checks passed"
