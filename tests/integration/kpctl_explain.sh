#!/usr/bin/env bash
# Scenario: `kpctl explain` shows how a score came about (issue 3, ARCHITECTURE.md guarantee 6),
# read from the database the real daemons wrote: rows of the simulated statistics bureau and
# of the assessment office travel kp-adapter → kp-collector → kp-broker → kp-scorer, the bureau
# revises one value, and explain must show the total, coverage, rank and grade, the tree with
# weights, full-tree weights G, methods with parameters, values and scores, the revision used
# and the one it superseded with source, ref, adapter and seq, a missing leaf, the deduction,
# one indicator with the path to it, and a quarter that pools the month.
. "$(dirname "$0")/lib.sh"

# Inputs, period 2015-03, group g1 (schemas/schemes/anshan-2015.yaml):
#   台安县 AS-TA  stats  gdp_growth          9, revised to 12  efficacy good 12 bad 6 no clamp
#                 stats  fixed_asset_growth  10                efficacy good 15 bad 5 [0,100]
#                 office politics            90                direct
#                 office criticism           1                 deduct 1 point
#   海城市 AS-HC  stats  gdp_growth          6
# Full-tree weights G (a leaf's share of the total, the product of the weight shares):
#   gdp_growth 55% × econ 40% × 30% = 0.066, fixed_asset_growth 55% × 40% × 25% = 0.055,
#   politics 55% × 5% = 0.0275; econ G = 0.22, result G = 0.55.
# AS-TA after the revision:
#   gdp_growth (12 − 6)/(12 − 6) × 40 + 60 = 100; fixed_asset_growth (10 − 5)/(15 − 5) × 40 + 60 = 80
#   weighted = (0.066 × 100 + 0.055 × 80 + 0.0275 × 90)/(0.066 + 0.055 + 0.0275)
#            = (6.6 + 4.4 + 2.475)/0.1485 = 13.475/0.1485 = 90.740741
#   total = 90.740741 − 1 = 89.740741, coverage 0.1485, grade 良 (80 ≤ total < 90)
#   econ = (30 × 100 + 25 × 80)/(30 + 25) = 5000/55 = 90.909091; result = 90.740741 (n 3)
#   before the revision: gdp 9 → 80: (5.28 + 4.4 + 2.475)/0.1485 − 1 = 81.851852 − 1 = 80.851852
# AS-HC: gdp 6 → 60, total 60, rank 2 of 2 in g1; AS-TA rank 1.
kp_pg_createdb "$it_work/pg" dept_office
ODSN=$(kp_pg_dsn "$it_work/pg" dept_office)
psql -X -q -v ON_ERROR_STOP=1 "$ODSN" -f "$KP_SOURCE_DIR/deploy/sim/department.sql" >/dev/null
qo() { psql -X -tA -v ON_ERROR_STOP=1 "$ODSN" -c "$1"; }

qs "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES
  ('AS-TA','gdp_growth','2015-03',9), ('AS-TA','fixed_asset_growth','2015-03',10),
  ('AS-HC','gdp_growth','2015-03',6)"
qo "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES
  ('AS-TA','politics','2015-03',90), ('AS-TA','criticism','2015-03',1)"

kp_cluster_adapter stats stats "$SDSN" "$KP_SOURCE_DIR/deploy/sim/department_query.sql"
kp_cluster_adapter office office "$ODSN" "$KP_SOURCE_DIR/deploy/sim/department_query.sql"
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_cluster_start adapter-stats
kp_cluster_start adapter-office

total_of() { q "SELECT round(total::numeric, 6) FROM kp_unit_score WHERE period = '2015-03' AND unit = '$1'"; }
kp_wait_sql "$DSN" "SELECT round(total::numeric, 6) FROM kp_unit_score WHERE period = '2015-03' AND unit = 'AS-TA'" 80.851852 90
check "AS-TA before the revision" "$(total_of AS-TA)" "80.851852"

qs "UPDATE indicator_value SET value = 12 WHERE unit_code = 'AS-TA' AND indicator_code = 'gdp_growth'"
kp_wait_sql "$DSN" "SELECT round(total::numeric, 6) FROM kp_unit_score WHERE period = '2015-03' AND unit = 'AS-TA'" 89.740741 30
kp_wait_sql "$DSN" "SELECT round(total::numeric, 6) FROM kp_unit_score WHERE period = '2015-03' AND unit = 'AS-HC'" 60.000000 30

KPCTL=$KP_BUILD_DIR/kpctl/kpctl
SCHEME=$KP_SOURCE_DIR/schemas/schemes/anshan-2015.yaml
out=$it_work/explain.txt
"$KPCTL" explain anshan-2015 AS-TA 2015-03 --scheme "$SCHEME" --dsn "$DSN" >"$out"
echo "---- kpctl explain anshan-2015 AS-TA 2015-03 --scheme ..."
cat "$out"
echo "----"

# the line of an indicator (its code and name start the line after the indentation)
line() { grep -E "^ *$1 " "$2" | head -n 1 | tr -s ' '; }
# field k (1-based, after the name) of the numbers part: weight G value score n
cols() { line "$1" "$2" | sed -E 's/^ *[^ ]+ [^ ]+ //' | cut -d' ' -f"$3"; }

check "header" "$(head -n 1 "$out" | tr -s ' ')" \
    "anshan-2015 AS-TA 台安县政府 (g1 第一组:县(市)政府) period 2015-03"
check "total, coverage, rank and grade" "$(grep '^total ' "$out")" \
    "total 89.740741  coverage 0.148500 (14.85%)  rank 1 of 2 in g1  grade 良"
check "the formula is stated" "$(grep -c '^formula: total = Σ G·score / Σ G over the present leaves' "$out")" 1
check "result: weight, G, score, n" "$(cols result "$out" 1-5)" "55 55.000% - 90.740741 3"
check "econ: weight, G, score" "$(cols econ "$out" 1-4)" "40 22.000% - 90.909091"
check "gdp_growth: weight, G, value, score, n" "$(cols gdp_growth "$out" 1-5)" "30 6.600% 12 100.000000 1"
check "gdp_growth: method and parameters" "$(line gdp_growth "$out" | sed -E 's/.* 1 //')" \
    "efficacy good=12 bad=6 base=60 span=40 clamp=none rollup=latest"
check "fixed_asset_growth: value and score" "$(cols fixed_asset_growth "$out" 3-4)" "10 80.000000"
check "politics: weight, G, score" "$(cols politics "$out" 1-4)" "5 2.750% 90 90.000000"
check "fiscal_revenue_growth applies but is missing" "$(cols fiscal_revenue_growth "$out" 1-4)" \
    "25 5.500% - missing"
check "duty does not apply to a county" "$(grep -c '^ *duty ' "$out" || true)" 0

# the observations behind gdp_growth: the revision used and the one it superseded
ref=$(q "SELECT ref FROM kp_observation WHERE unit = 'AS-TA' AND indicator = 'gdp_growth' AND rev = 1")
seq1=$(q "SELECT seq FROM kp_observation WHERE unit = 'AS-TA' AND indicator = 'gdp_growth' AND rev = 1")
seq0=$(q "SELECT seq FROM kp_observation WHERE unit = 'AS-TA' AND indicator = 'gdp_growth' AND rev = 0")
obs() { grep -E "^ +$1 +stats/$ref rev $2 " "$out" | tr -s ' ' | sed -E 's/ observed .*//; s/^ //'; }
check "rev 1 gives the value" "$(obs value 1)" "value stats/$ref rev 1 val 12 w 1 2015-03 adapter stats seq $seq1"
check "rev 0 is superseded by rev 1" "$(obs superseded 0)" \
    "superseded stats/$ref rev 0 val 9 w 1 2015-03 adapter stats seq $seq0"
check "superseded says by what" "$(grep -E "stats/$ref rev 0 " "$out" | sed -E 's/.*  //')" "(by rev 1)"
check "observed and received times" \
    "$(grep -cE "stats/$ref rev 1 .* observed 20[0-9-]{8}T[0-9:.]{12}Z  received 20[0-9-]{8}T[0-9:.]{12}Z$" "$out")" 1
check "politics comes from the office adapter" \
    "$(grep -cE '^ +value +office/siv-[0-9]+ rev 0 +val 90 .*adapter office seq ' "$out")" 1

# the deduction
check "adjustments listed" "$(grep -c '^adjustments$' "$out")" 1
check "criticism deducts 1" "$(line criticism "$out" | grep -o '(-1.000000)')" "(-1.000000)"

# one indicator: the path down to it, then it with its observations
"$KPCTL" explain anshan-2015 AS-TA gdp_growth 2015-03 --scheme "$SCHEME" --dsn "$DSN" >"$out.one"
check "one indicator: path and leaf only" \
    "$(sed -n '/^indicator /,$p' "$out.one" | grep -vE '^ +(value|used|held|superseded) ' |
        awk 'NR > 1 { print $1 }' | tr '\n' ' ')" "result econ gdp_growth "
check "one indicator: its two revisions" "$(grep -cE "stats/$ref rev [01] " "$out.one")" 2

# the quarter: gdp_growth rolls up by latest (March), the criticism pools into Q1
"$KPCTL" explain anshan-2015 AS-TA 2015-Q1 --scheme "$SCHEME" --dsn "$DSN" >"$out.q1"
check "Q1 total" "$(grep '^total ' "$out.q1" | cut -d' ' -f2)" "89.740741"
check "Q1 lists the March observations" "$(grep -cE "stats/$ref rev [01] .* 2015-03 " "$out.q1")" 2

# the default period is the latest month with a total
check "default period" "$("$KPCTL" explain anshan-2015 AS-TA --scheme "$SCHEME" --dsn "$DSN" |
    head -n 1 | grep -o 'period .*')" "period 2015-03"

# Without the scheme file the tree comes from kp_indicator; weights from kp_indicator_weight
# once the scorer records them (migration 002). Until then explain says so and shows no G.
nw=$(q "SELECT count(*) FROM kp_indicator_weight WHERE scheme = 'anshan-2015'")
if [ "$nw" = 0 ]; then
    "$KPCTL" explain anshan-2015 AS-TA 2015-03 --dsn "$DSN" >"$out.db"
    check "no weights recorded: said" "$(grep -c '^(weights unknown' "$out.db")" 1
    check "no weights recorded: scores still shown" "$(cols gdp_growth "$out.db" 1-5)" "- - 12 100.000000 1"
    # What the scorer is to write for AS-TA (SCHEMES.md weights of the nodes that apply to g1),
    # so that the database alone explains the same tree.
    q "INSERT INTO indicator_weight (scheme, unit, indicator, weight)
       SELECT 'anshan-2015', 'AS-TA', i, w FROM (VALUES
         ('result',55),('process',30),('leader',10),('public',5),
         ('econ',40),('politics',5),('culture',5),('society',15),('ecology',15),('reform',5),
         ('rule_of_law',5),('governance',10),
         ('gdp_growth',30),('fixed_asset_growth',25),('fiscal_revenue_growth',25),
         ('retail_sales_growth',20),('income_growth',50),('society_tasks',50),
         ('energy_per_gdp',60),('ecology_tasks',40),
         ('budget_execution',35),('audit_findings',15),('audit_rectification',20),
         ('approval_ontime',30)) AS t(i, w)" >/dev/null
fi
"$KPCTL" explain anshan-2015 AS-TA 2015-03 --dsn "$DSN" >"$out.db"
check "weights from the database: the same lines as from the scheme file" \
    "$(sort "$out.db" | md5sum)" "$(sort "$out" | md5sum)"

# usage errors
set +e
"$KPCTL" explain anshan-2015 --dsn "$DSN" >/dev/null 2>&1
check "missing UNIT is a usage error" "$?" 2
"$KPCTL" explain anshan-2015 AS-NOPE --dsn "$DSN" >/dev/null 2>&1
check "unknown unit fails" "$?" 1
"$KPCTL" explain anshan-2015 AS-TA no_such_indicator --dsn "$DSN" >/dev/null 2>&1
check "unknown indicator fails" "$?" 1
set -e
echo "kpctl_explain: all checks passed"
