#!/usr/bin/env bash
# Scenario: rows inserted into the simulated statistics-bureau database travel through
# kp-adapter (sql source) → kp-collector → kp-broker → kp-scorer and end as exact indicator
# scores, totals, coverage, ranks and grades of the Anshan 2015 scheme in PostgreSQL's read
# model (issue 2). A bad row ends as a rejection; a revision replaces the earlier value.
. "$(dirname "$0")/lib.sh"

# Inputs, period 2015-03, all from src stats. Leaf parameters (schemas/schemes/anshan-2015.yaml):
#   gdp_growth            efficacy good 12  bad 6  no clamp   weight 55% × 40% × 30% = 0.066
#   fixed_asset_growth    efficacy good 15  bad 5  [0,100]    weight 55% × 40% × 25% = 0.055
#   fiscal_revenue_growth efficacy good 10  bad 0  [0,100]    weight 55% × 40% × 25% = 0.055
#   retail_sales_growth   efficacy good 12  bad 8  [0,100]    weight 55% × 40% × 20% = 0.044
#   income_growth         efficacy good 10  bad 6  [0,100]    weight 55% × 15% × 50% = 0.04125
#   energy_per_gdp        efficacy good -4  bad 0  [0,100]    weight 55% × 15% × 60% = 0.0495
# efficacy: 60 + 40 × (x − bad)/(good − bad). All six present: coverage 0.31075.
qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES
  -- 海城市 AS-HC: every leaf exactly at good → 100 each → total 100, grade 优
  ('AS-HC','gdp_growth','2015-03',12), ('AS-HC','fixed_asset_growth','2015-03',15),
  ('AS-HC','fiscal_revenue_growth','2015-03',10), ('AS-HC','retail_sales_growth','2015-03',12),
  ('AS-HC','income_growth','2015-03',10), ('AS-HC','energy_per_gdp','2015-03',-4),
  -- 台安县 AS-TA: gdp 9 → 60+40×3/6 = 80; fai 5 → 60; fiscal 10 → 100; retail 8 → 60;
  -- income 6 → 60; energy 0 → 60.
  -- total = (80×.066 + 60×.055 + 100×.055 + 60×.044 + 60×.04125 + 60×.0495) / .31075
  --       = (5.28 + 3.3 + 5.5 + 2.64 + 2.475 + 2.97) / .31075 = 22.165 / .31075 = 71.327434
  ('AS-TA','gdp_growth','2015-03',9), ('AS-TA','fixed_asset_growth','2015-03',5),
  ('AS-TA','fiscal_revenue_growth','2015-03',10), ('AS-TA','retail_sales_growth','2015-03',8),
  ('AS-TA','income_growth','2015-03',6), ('AS-TA','energy_per_gdp','2015-03',0),
  -- 岫岩县 AS-XY: only gdp 5.81 → (5.81−6)/6×40+60 = 58.733333 (no clamp; DOMAIN.md check);
  -- total 58.733333, coverage .066, grade 差
  ('AS-XY','gdp_growth','2015-03',5.81),
  -- group 2, gdp only: 千山区 12 → 100; 铁东区 and 铁西区 9 → 80 (a tie); 立山区 6 → 60.
  -- Standard competition ranking: 1, 2, 2, 4.
  ('AS-QS','gdp_growth','2015-03',12), ('AS-TD','gdp_growth','2015-03',9),
  ('AS-TX','gdp_growth','2015-03',9), ('AS-LS','gdp_growth','2015-03',6),
  -- a unit the scheme does not know: refused with unknown_unit, stored as a rejection
  ('NO-SUCH-UNIT','gdp_growth','2015-03',7)"

kp_cluster_adapter stats stats "$SDSN" "$KP_SOURCE_DIR/deploy/sim/department_query.sql"
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_cluster_start adapter-stats

kp_wait_sql "$DSN" "SELECT count(*) FROM kp_unit_score WHERE scheme = 'anshan-2015' AND period = '2015-03'" 7 90
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation" 17 30
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_rejection" 1 30

row() { q "SELECT round(total::numeric, 6) || ' ' || round(coverage::numeric, 6) || ' ' || rank || ' ' || grade
             FROM kp_unit_score WHERE scheme = 'anshan-2015' AND period = '2015-03' AND unit = '$1'"; }
check "海城市 total coverage rank grade" "$(row AS-HC)" "100.000000 0.310750 1 优"
check "台安县 total coverage rank grade" "$(row AS-TA)" "71.327434 0.310750 2 中"
check "岫岩县 total coverage rank grade" "$(row AS-XY)" "58.733333 0.066000 3 差"
check "千山区 rank 1" "$(row AS-QS)" "100.000000 0.066000 1 优"
check "铁东区 tie rank 2" "$(row AS-TD)" "80.000000 0.066000 2 良"
check "铁西区 tie rank 2" "$(row AS-TX)" "80.000000 0.066000 2 良"
check "立山区 rank 4" "$(row AS-LS)" "60.000000 0.066000 4 中"
check "unit names in the read model" \
    "$(q "SELECT unit_name || ' ' || grp FROM kp_unit_score WHERE period = '2015-03' AND unit = 'AS-HC'")" \
    "海城市政府 g1"
check "岫岩县 gdp_growth indicator score" \
    "$(q "SELECT value || ' ' || round(score::numeric, 6) || ' ' || n_obs FROM kp_indicator_score
           WHERE period = '2015-03' AND unit = 'AS-XY' AND indicator = 'gdp_growth'")" \
    "5.81 58.733333 1"
check "rejection row" \
    "$(q "SELECT src || ' ' || adapter || ' ' || code FROM kp_rejection")" "stats stats unknown_unit"
check "provenance of an observation" \
    "$(q "SELECT o.src || ' ' || o.adapter || ' ' || o.rev || ' ' || (o.ref = 'siv-' || 1)
           FROM kp_observation o WHERE unit = 'AS-HC' AND indicator = 'gdp_growth'")" "stats stats 0 true"

# A revision: the bureau corrects 台安县's gdp_growth from 9 to 12 (→ 100).
# total = (6.6 + 3.3 + 5.5 + 2.64 + 2.475 + 2.97) / .31075 = 23.485 / .31075 = 75.575221
qs "UPDATE indicator_value SET value = 12 WHERE unit_code = 'AS-TA' AND indicator_code = 'gdp_growth'"
kp_wait_sql "$DSN" "SELECT round(total::numeric, 6) FROM kp_unit_score WHERE period = '2015-03' AND unit = 'AS-TA'" 75.575221 30
check "both revisions kept with provenance" \
    "$(q "SELECT string_agg(rev || ':' || value, ' ' ORDER BY rev) FROM kp_observation
           WHERE unit = 'AS-TA' AND indicator = 'gdp_growth'")" "0:9 1:12"
check "台安县 still ranked 2 with grade 中" "$(row AS-TA)" "75.575221 0.310750 2 中"
check "every batch recorded once" "$(q "SELECT count(*) = count(DISTINCT (adapter, seq)) FROM batch")" "t"
echo "stats_to_ranking: all checks passed"
