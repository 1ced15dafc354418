#!/usr/bin/env bash
# Scenario: the adapter and the scorer are killed with SIGKILL several times while the
# statistics bureau publishes and revises 720 rows; after restarts every row's latest
# revision is stored exactly once, nothing is missing or duplicated, and every monthly total
# and rank equals a recomputation from the source rows (issue 2; ARCHITECTURE.md
# guarantees 1-3).
. "$(dirname "$0")/lib.sh"

units="'AS-HC','AS-TA','AS-XY','AS-TD','AS-TX','AS-LS','AS-QS','AS-GX','AS-JK','AS-QSFJ'"
leaves="'gdp_growth','fixed_asset_growth','fiscal_revenue_growth','retail_sales_growth','income_growth','energy_per_gdp'"
publish() { # months FROM..TO: one row per unit × leaf × month, values 2 decimals in [-5, 20)
    qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value)
        SELECT u, l, '2015-' || lpad(m::text, 2, '0'), round((random() * 25 - 5)::numeric, 2)
          FROM unnest(ARRAY[$units]) u, unnest(ARRAY[$leaves]) l, generate_series($1, $2) m" >/dev/null
}

# Small batches, so that a kill lands between many of them.
kp_cluster_adapter stats stats "$SDSN" "$KP_SOURCE_DIR/deploy/sim/department_query.sql" \
    "batch_max_obs: 15
ack_timeout_ms: 1000"
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_cluster_start adapter-stats

publish 1 3
sleep 1.5
kp_cluster_kill adapter-stats KILL
publish 4 6
kp_cluster_start adapter-stats
sleep 1
kp_cluster_kill scorer KILL
qs "UPDATE indicator_value SET value = value + 1 WHERE id % 7 = 0" >/dev/null
sleep 1
kp_cluster_start scorer
publish 7 9
sleep 0.7
kp_cluster_kill adapter-stats KILL
kp_cluster_kill scorer KILL
qs "UPDATE indicator_value SET value = value - 2 WHERE id % 11 = 0" >/dev/null
publish 10 12
kp_cluster_start scorer
kp_cluster_start adapter-stats

check "source rows" "$(qs "SELECT count(*) FROM indicator_value")" 720
# Every source row's latest revision arrives.
kp_wait_sql "$DSN" "SELECT count(DISTINCT ref) FROM observation" 720 120
psql -X -q -v ON_ERROR_STOP=1 "$SDSN" \
    -c "\\copy (SELECT 'siv-' || id, revision, value, unit_code, indicator_code, period FROM indicator_value) TO '$it_work/src.tsv'"
q "CREATE TABLE it_src (ref text, rev int, value float8, unit text, indicator text, period text)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$DSN" -c "\\copy it_src FROM '$it_work/src.tsv'"
# Wait until the latest revision of every row has arrived (revisions may come after the ref).
kp_wait_sql "$DSN" "SELECT count(*) FROM it_src s JOIN LATERAL (SELECT max(rev) r FROM observation o WHERE o.ref = s.ref) m ON m.r = s.rev" 720 120

check "no (src, ref, rev) twice" "$(q "SELECT count(*) - count(DISTINCT (src, ref, rev)) FROM observation")" 0
check "no batch applied twice" "$(q "SELECT count(*) - count(DISTINCT (adapter, seq)) FROM batch")" 0
check "no refs the source does not have" \
    "$(q "SELECT count(*) FROM observation o WHERE NOT EXISTS (SELECT 1 FROM it_src s WHERE s.ref = o.ref)")" 0
check "latest revisions carry the source's values and cells" \
    "$(q "SELECT count(*) FROM it_src s JOIN observation o ON o.ref = s.ref AND o.rev = s.rev
           WHERE o.value = s.value AND o.unit = s.unit AND o.indicator = s.indicator AND o.period = s.period")" 720
check "no rejections" "$(q "SELECT count(*) FROM rejection")" 0
check "observations = distinct (ref, rev) stored" "$(q "SELECT count(*) FROM observation")" \
    "$(q "SELECT count(DISTINCT (ref, rev)) FROM observation")"

# Every monthly total, recomputed from the source rows with the scheme's formulas (see
# stats_to_ranking.sh for the weights): all six leaves present, so total = Σ w·score / Σ w.
expected="WITH leaf(code, good, bad, clamp, w) AS (VALUES
   ('gdp_growth', 12.0, 6.0, false, 0.066), ('fixed_asset_growth', 15, 5, true, 0.055),
   ('fiscal_revenue_growth', 10, 0, true, 0.055), ('retail_sales_growth', 12, 8, true, 0.044),
   ('income_growth', 10, 6, true, 0.04125), ('energy_per_gdp', -4, 0, true, 0.0495)),
 sc AS (SELECT s.unit, s.period, l.w,
               CASE WHEN l.clamp THEN least(100, greatest(0, 60 + 40 * (s.value - l.bad) / (l.good - l.bad)))
                    ELSE 60 + 40 * (s.value - l.bad) / (l.good - l.bad) END AS score
          FROM it_src s JOIN leaf l ON l.code = s.indicator),
 tot AS (SELECT unit, period, sum(w * score) / sum(w) AS total FROM sc GROUP BY unit, period),
 rk AS (SELECT t.*, u.grp, rank() OVER (PARTITION BY u.grp, t.period ORDER BY round(t.total::numeric, 9) DESC) AS rank
          FROM tot t JOIN kp_unit u ON u.scheme = 'anshan-2015' AND u.unit = t.unit)"
check "monthly totals in kp_unit_score" \
    "$(q "SELECT count(*) FROM kp_unit_score WHERE scheme = 'anshan-2015' AND period LIKE '2015-__' AND period NOT LIKE '2015-Q%' AND period NOT LIKE '2015-H%'")" 120
check "every monthly total equals the recomputation" \
    "$(q "$expected SELECT count(*) FROM rk JOIN kp_unit_score s ON s.scheme = 'anshan-2015' AND s.unit = rk.unit AND s.period = rk.period
                   WHERE abs(s.total - rk.total) < 1e-9 AND s.rank = rk.rank AND s.coverage BETWEEN 0.31074 AND 0.31076")" 120
check "the adapter's spool is empty" \
    "$(sqlite3 "$it_work/spool/stats.db" "SELECT count(*) FROM batch" 2>/dev/null || echo unreadable)" 0
echo "kill_adapter_scorer: batches=$(q "SELECT count(*) FROM batch") observations=$(q "SELECT count(*) FROM observation")"
echo "kill_adapter_scorer: all checks passed"
