#!/usr/bin/env bash
# Scenario (issue 6, ARCHITECTURE.md guarantee 5: only granted sources write), real daemons
# with CURVE on every hop (keys from `kpctl keygen`, tests/harness/cluster.sh):
#   1. the statistics adapter is granted gdp_growth and fixed_* only: of one batch with four
#      rows, the two granted are stored and the two others are rejections not_granted_indicator
#      of the same (adapter, seq);
#   2. kp-send (tests/tools) plays other clients: a key the collector does not know gets no
#      answer and stores nothing; a valid key with a spoofed aid is nacked bad_aid; an
#      ungranted scheme is nacked not_granted_scheme; a key removed from the key file by
#      SIGHUP is refused on its next connection;
#   3. SQL-injection text in ref and x is stored verbatim and harms nothing;
#   4. keys rotate by SIGHUP without loss (new key beside the old, adapter restarted with it,
#      old key removed);
#   5. the read-only role kaoping_reader reads the kp_* views and nothing else and cannot
#      write; the scorer runs as a member of kaoping_writer; a world-readable secret key file
#      or password file makes a daemon refuse to start; no secret appears in any log.
export KP_INSECURE=0 # this scenario is about CURVE: never plain
. "$(dirname "$0")/lib.sh"

SEND=$KP_BUILD_DIR/tests/tools/kp-send
KPCTL=$KP_BUILD_DIR/kpctl/kpctl

# ---- set-up: the stats adapter granted two indicator patterns; a probe client -----------------
kp_cluster_adapter stats stats "$SDSN" "$KP_SOURCE_DIR/deploy/sim/department_query.sql"
sed -i 's/^      indicators: \["\*"\]$/      indicators: [gdp_growth, "fixed_*"]/' "$KP_ADAPTER_KEYS"
check "stats adapter's grants narrowed" "$(grep -c 'indicators: \[gdp_growth, "fixed_\*"\]' "$KP_ADAPTER_KEYS")" 1
"$KPCTL" keygen probe --dir "$KP_KEYS" >/dev/null
"$KPCTL" keygen stranger --dir "$KP_KEYS" >/dev/null
cat >>"$KP_ADAPTER_KEYS" <<YAML
- aid: probe
  key: "$(cat "$KP_KEYS/probe.key")"
  grants:
    - scheme: $KP_SCHEME
      src: stats
      indicators: ["*"]
YAML
for d in broker collector scorer adapter-stats; do kp_cluster_start "$d"; done
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_schema_version WHERE version = 4" 1 60
for i in $(seq 1 100); do grep -q 'code=started' "$KP_WORK/logs/collector.log" && break; sleep 0.1; done
check "collector: CURVE towards adapters and broker" \
    "$(grep -c 'code=started .*adapters_hop=curve broker_hop=curve' "$KP_WORK/logs/collector.log")" 1
check "broker: CURVE on both endpoints" "$(grep -c 'code=started .*curve=true' "$KP_WORK/logs/broker.log")" 1

send() { # kp-send with the probe's keys unless --secret is given first
    "$SEND" --collector "tcp://127.0.0.1:$KP_COL_PORT" "$@" 2>>"$it_work/kp-send.err" || true
}
probe() { send --secret "$KP_KEYS/probe.secret" --server-key "$KP_KEYS/collector.key" "$@"; }

# ---- 1. an ungranted indicator is rejected, the granted ones of the batch are stored -----------
# One INSERT with one updated_at: the adapter reads the four rows in one poll, one batch.
qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value, updated_at) VALUES
  ('AS-HC', 'gdp_growth',         '2015-03', 12, now()),
  ('AS-HC', 'income_growth',      '2015-03', 10, now()),
  ('AS-TA', 'fixed_asset_growth', '2015-03',  5, now()),
  ('AS-TA', 'energy_per_gdp',     '2015-03',  0, now())" >/dev/null
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation WHERE adapter = 'stats'" 2 60
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_rejection WHERE adapter = 'stats'" 2 30
check "granted observations stored" \
    "$(q "SELECT string_agg(ref || ':' || unit || ':' || indicator, ' ' ORDER BY ref) FROM kp_observation WHERE adapter = 'stats'")" \
    "siv-1:AS-HC:gdp_growth siv-3:AS-TA:fixed_asset_growth"
check "ungranted observations rejected not_granted_indicator" \
    "$(q "SELECT string_agg(ref || ':' || n || ':' || code, ' ' ORDER BY ref) FROM kp_rejection WHERE adapter = 'stats'")" \
    "siv-2:1:not_granted_indicator siv-4:3:not_granted_indicator"
check "rejection message names indicator and adapter" \
    "$(q "SELECT msg FROM kp_rejection WHERE ref = 'siv-2'")" \
    "indicator income_growth is not granted to adapter stats for src stats"
check "all four from one batch" \
    "$(q "SELECT count(DISTINCT (adapter, seq)) FROM (SELECT adapter, seq FROM kp_observation WHERE adapter = 'stats'
           UNION ALL SELECT adapter, seq FROM kp_rejection WHERE adapter = 'stats') b")" 1
check "the batch row counts 4 observations, 2 stored" \
    "$(q "SELECT n_obs || ' ' || stored || ' ' || jsonb_array_length(rej) FROM batch WHERE adapter = 'stats'")" "4 2 2"
check "only granted indicators scored" \
    "$(q "SELECT string_agg(indicator, ' ' ORDER BY indicator) FROM kp_indicator_score WHERE period = '2015-03'
           AND indicator IN ('gdp_growth', 'income_growth', 'fixed_asset_growth', 'energy_per_gdp')")" \
    "fixed_asset_growth gdp_growth"
check "collector counted them" \
    "$(kp_cluster_metric collector kaoping_collector_observations_not_granted_total)" 2
check "scorer counted them" \
    "$(kp_cluster_metric scorer 'kaoping_scorer_rejections_total{code="not_granted_indicator"}')" 2

# ---- 2. other clients: unknown key, spoofed aid, ungranted scheme --------------------------
batches=$(q "SELECT count(*) FROM batch")
check "an unknown key gets no answer" \
    "$(send --secret "$KP_KEYS/stranger.secret" --server-key "$KP_KEYS/collector.key" --timeout-ms 1500 \
        --aid probe --scheme "$KP_SCHEME" --src probe --seq 1 --obs AS-HC,gdp_growth,2015-04,1,u-1)" timeout
check "a plain-TCP client gets no answer" \
    "$(send --timeout-ms 1500 --aid probe --scheme "$KP_SCHEME" --src probe --seq 1 --obs AS-HC,gdp_growth,2015-04,1,u-2)" timeout
check "nothing of theirs stored" "$(q "SELECT count(*) FROM batch")" "$batches"
check "refused handshakes counted" \
    "$(awk -v v="$(kp_cluster_metric collector 'kaoping_collector_handshakes_total{result="refused"}')" 'BEGIN { print (v >= 1) }')" 1
check "a valid key with a spoofed aid: bad_aid" \
    "$(probe --aid stats --scheme "$KP_SCHEME" --src stats --seq 900 --obs AS-HC,gdp_growth,2015-04,1,spoof-1)" \
    "nack seq=900 code=bad_aid retry=false"
check "an ungranted scheme: not_granted_scheme" \
    "$(probe --aid probe --scheme other-2015 --src probe --seq 1 --obs AS-HC,gdp_growth,2015-04,1,p-1)" \
    "nack seq=1 code=not_granted_scheme retry=false"
check "an ungranted src: not_granted_scheme" \
    "$(probe --aid probe --scheme "$KP_SCHEME" --src office --seq 2 --obs AS-HC,gdp_growth,2015-04,1,p-2)" \
    "nack seq=2 code=not_granted_scheme retry=false"
check "nothing of that stored" "$(q "SELECT count(*) FROM batch")" "$batches"

# ---- 3. SQL-injection text in ref and x: stored verbatim, harms nothing ----------------------
inj_ref="x'); DROP TABLE observation; --"
inj_ref2="r\"; DELETE FROM batch WHERE '1'='1"
inj_x="'; TRUNCATE rejection, batch; SELECT pg_sleep(0); --"
check "injection batch acked, the unknown unit rejected" \
    "$(probe --aid probe --scheme "$KP_SCHEME" --src stats --seq 3 \
        --obs "AS-HC,gdp_growth,2015-05,11,$inj_ref" --obs "NO-SUCH-UNIT,gdp_growth,2015-05,1,$inj_ref2" \
        --x "note=$inj_x" --x "k'); DROP TABLE kp_unit;--=v")" \
    "ack seq=3 stored=1 dup=false rej=1:unknown_unit"
check "ref stored verbatim" "$(q "SELECT ref FROM kp_observation WHERE adapter = 'probe'")" "$inj_ref"
check "x stored verbatim" \
    "$(q "SELECT x->>'note' FROM observation WHERE adapter = 'probe'")" "$inj_x"
check "x key stored verbatim" \
    "$(q "SELECT x->>'k''); DROP TABLE kp_unit;--' FROM observation WHERE adapter = 'probe'")" v
check "the rejected one keeps its ref verbatim" \
    "$(q "SELECT ref FROM kp_rejection WHERE adapter = 'probe'")" "$inj_ref2"
check "tables intact" \
    "$(q "SELECT (to_regclass('observation') IS NOT NULL) AND (to_regclass('kp_unit') IS NOT NULL)
              AND (SELECT count(*) FROM batch) = $batches + 1 AND (SELECT count(*) FROM rejection) = 3")" t

# ---- revocation: the probe's key leaves the key file; SIGHUP; its next connection is refused ----
awk '/^- aid: / { skip = ($3 == "probe") } !skip' "$KP_ADAPTER_KEYS" >"$KP_ADAPTER_KEYS.tmp"
mv "$KP_ADAPTER_KEYS.tmp" "$KP_ADAPTER_KEYS"
kill -HUP "$(cat "$KP_WORK/pids/collector")"
for i in $(seq 1 50); do grep -q 'code=keys_reloaded' "$KP_WORK/logs/collector.log" && break; sleep 0.1; done
check "key file reloaded" "$(grep -c 'code=keys_reloaded .*adapters=1 keys=1' "$KP_WORK/logs/collector.log")" 1
check "a revoked key gets no answer" \
    "$(probe --timeout-ms 1500 --aid probe --scheme "$KP_SCHEME" --src stats --seq 4 --obs AS-HC,gdp_growth,2015-06,1,p-4)" timeout
# the stats adapter's connection stayed: a new row still arrives
qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES ('AS-XY', 'gdp_growth', '2015-03', 9)" >/dev/null
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation WHERE adapter = 'stats'" 3 30

# ---- key rotation by SIGHUP, no loss: new key beside the old one, adapter restarted on it,
# old key removed; rows published at every step are all stored exactly once ----------------
hup_collector() { # wait for the Nth keys_reloaded line
    kill -HUP "$(cat "$KP_WORK/pids/collector")"
    for i in $(seq 1 50); do
        [ "$(grep -c 'code=keys_reloaded' "$KP_WORK/logs/collector.log")" -ge "$1" ] && return 0
        sleep 0.1
    done
    echo "FAIL: the collector did not reload its key file" >&2
    exit 1
}
publish() { # one gdp_growth row per unit for month $1 (granted to stats)
    qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value)
        SELECT u, 'gdp_growth', '$1', 8 FROM unnest(ARRAY['AS-HC','AS-TA','AS-XY','AS-QS','AS-TD']) u" >/dev/null
}
old_key=$(cat "$KP_KEYS/adapter-stats.key")
"$KPCTL" keygen adapter-stats-2 --dir "$KP_KEYS" >/dev/null
new_key=$(cat "$KP_KEYS/adapter-stats-2.key")
publish 2015-07
# Z85 keys hold sed's and regex's special characters: replace whole lines literally.
replace_line() { # FILE OLD NEW
    awk -v old="$2" -v new="$3" '$0 == old { print new; next } { print }' "$1" >"$1.tmp" && mv "$1.tmp" "$1"
}
both="  keys: [\"$old_key\", \"$new_key\"]"
replace_line "$KP_ADAPTER_KEYS" "  key: \"$old_key\"" "$both"
check "both keys listed" "$(grep -cxF -- "$both" "$KP_ADAPTER_KEYS")" 1
hup_collector 2
publish 2015-08
kp_cluster_kill adapter-stats TERM
sed -i "s|adapter-stats.secret\$|adapter-stats-2.secret|" "$KP_WORK/etc/adapter-stats.yaml"
kp_cluster_start adapter-stats
publish 2015-09
replace_line "$KP_ADAPTER_KEYS" "$both" "  key: \"$new_key\""
check "old key removed" "$(grep -cF -- "$old_key" "$KP_ADAPTER_KEYS")" 0
hup_collector 3
publish 2015-10
n_rows=$(qs "SELECT count(*) FROM indicator_value WHERE indicator_code = 'gdp_growth'")
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation WHERE adapter = 'stats' AND indicator = 'gdp_growth'" "$n_rows" 60
check "rotation: every row stored once" \
    "$(q "SELECT count(*) - count(DISTINCT (src, ref, rev)) FROM observation")" 0
check "rotation: the adapter came back with its new key" \
    "$(grep -c 'code=zap_accepted domain=kaoping .*user_id=stats' "$KP_WORK/logs/collector.log")" 2
check "rotation: no dead letters" "$(kp_cluster_metric adapter-stats kaoping_adapter_spool_dead)" 0

# ---- 4. roles ---------------------------------------------------------------------------------
q "CREATE ROLE dash LOGIN IN ROLE kaoping_reader; CREATE ROLE kp_scorer LOGIN IN ROLE kaoping_writer" >/dev/null
RDSN="$DSN user=dash"
rq() { psql -X -tA -v ON_ERROR_STOP=1 "$RDSN" -c "$1" 2>&1; }
denied() { # SQL: must fail with permission denied
    local out
    out=$(rq "$1") && { echo "FAIL: reader could: $1 ($out)" >&2; exit 1; }
    case $out in *"permission denied"*) echo "ok: reader may not: $1" ;; *) echo "FAIL: $1: $out" >&2; exit 1 ;; esac
}
check "reader reads kp_observation" "$(rq "SELECT count(*) FROM kp_observation")" "$(q "SELECT count(*) FROM observation")"
check "reader reads kp_rejection" "$(rq "SELECT count(*) FROM kp_rejection")" 3
check "reader reads kp_indicator_score" "$(rq "SELECT count(*) > 0 FROM kp_indicator_score")" t
check "reader reads kp_unit_score" "$(rq "SELECT count(*) > 0 FROM kp_unit_score")" t
check "reader reads kp_alert" "$(rq "SELECT count(*) >= 0 FROM kp_alert")" t
denied "INSERT INTO kp_observation (scheme, src, ref, rev, unit, indicator, period, value, w, observed_at, adapter, seq)
        VALUES ('$KP_SCHEME', 'x', 'r', 0, 'AS-HC', 'gdp_growth', '2015-03', 1, 1, now(), 'x', 1)"
denied "UPDATE kp_observation SET value = 0"
denied "DELETE FROM kp_rejection"
denied "SELECT count(*) FROM observation"
denied "SELECT count(*) FROM kp_unit"
denied "SELECT count(*) FROM batch"
denied "INSERT INTO observation (scheme, src, ref, rev, unit, indicator, period, value, w, observed_at, adapter, seq)
        VALUES ('$KP_SCHEME', 'x', 'r', 0, 'AS-HC', 'gdp_growth', '2015-03', 1, 1, now(), 'x', 1)"
denied "TRUNCATE observation"
denied "CREATE TABLE kp_evil (x int)"
check "nothing changed by the reader" "$(q "SELECT count(*) FROM observation WHERE src = 'x'")" 0

# The scorer as a member of kaoping_writer (migrations already applied: it only checks them).
kp_cluster_kill scorer TERM
sed -i "s|^  dsn: \"\\(.*\\)\"\$|  dsn: \"\\1 user=kp_scorer\"|" "$KP_WORK/etc/scorer.yaml"
check "scorer DSN names the writer" "$(grep -c 'user=kp_scorer"$' "$KP_WORK/etc/scorer.yaml")" 1
kp_cluster_start scorer
n_stats=$(q "SELECT count(*) FROM kp_observation WHERE adapter = 'stats'")
qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES ('AS-QS', 'gdp_growth', '2015-03', 12)" >/dev/null
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation WHERE adapter = 'stats'" $((n_stats + 1)) 60
check "the writer's session stored it" \
    "$(q "SELECT count(*) FROM pg_stat_activity WHERE usename = 'kp_scorer'")" 1
WDSN="$DSN user=kp_scorer"
for sql in "DROP TABLE observation" "TRUNCATE observation" "CREATE TABLE kp_evil (x int)" "ALTER TABLE batch ADD COLUMN evil int"; do
    out=$(psql -X -tA -v ON_ERROR_STOP=1 "$WDSN" -c "$sql" 2>&1) && { echo "FAIL: writer could: $sql" >&2; exit 1; }
    case $out in *"must be owner"* | *"permission denied"*) echo "ok: writer may not: $sql" ;; *) echo "FAIL: $sql: $out" >&2; exit 1 ;; esac
done

# ---- secrets: group/world-readable files refused; never in a log -------------------------------
chmod 644 "$KP_KEYS/collector.secret"
out=$(timeout 10 "$KP_BUILD_DIR/collector/kp-collector" -c "$KP_WORK/etc/collector.yaml" --set admin=127.0.0.1:0 \
    --set listen=tcp://127.0.0.1:0 2>&1) && { echo "FAIL: collector started with a world-readable secret" >&2; exit 1; }
check "collector refuses a world-readable secret" \
    "$(printf '%s\n' "$out" | grep -c 'secret key file is accessible by group or others (mode 0644): chmod 600')" 1
chmod 600 "$KP_KEYS/collector.secret"
printf '127.0.0.1:*:kaoping:kp_scorer:not-a-real-password\n' >"$it_work/pgpass"
chmod 644 "$it_work/pgpass"
out=$(timeout 10 "$KP_BUILD_DIR/scorer/kp-scorer" -c "$KP_WORK/etc/scorer.yaml" --set "db.passfile=$it_work/pgpass" \
    --set admin=127.0.0.1:0 2>&1) && { echo "FAIL: scorer started with a world-readable password file" >&2; exit 1; }
check "scorer refuses a world-readable password file" \
    "$(printf '%s\n' "$out" | grep -c 'db.passfile: .*without group or other access')" 1
leaks=0
for f in "$KP_KEYS"/*.secret; do
    s=$(cat "$f")
    if grep -rqF -- "$s" "$KP_WORK/logs" "$it_work/kp-send.err" 2>/dev/null; then
        echo "FAIL: the secret of $f is in a log" >&2
        leaks=$((leaks + 1))
    fi
done
check "no secret key in any log" "$leaks" 0
check "no password in any log" "$(grep -rc 'not-a-real-password' "$KP_WORK/logs" | awk -F: '{ s += $2 } END { print s + 0 }')" 0
echo "security_grants: all checks passed"
