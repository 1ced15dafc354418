#!/usr/bin/env bash
# Scenario: the Anshan 2015 scheme scored end to end with every part of its formula
# (issue 3): 总成绩 = 结果得分×55% + 过程得分×30% + 领导评价得分×10% + 公众评议得分×5% + 加分 − 扣分,
# fed by four department adapters (stats, office, tasks, survey; the sql source and the
# profiles of deploy/profiles) through the whole pipeline with CURVE. The monthly and the
# yearly total of 海城市 are computed by hand below.
. "$(dirname "$0")/lib.sh"

for d in office tasks survey; do
    kp_pg_createdb "$it_work/pg" "dept_$d"
    psql -X -q -v ON_ERROR_STOP=1 "$(kp_pg_dsn "$it_work/pg" "dept_$d")" \
        -f "$KP_SOURCE_DIR/deploy/sim/department.sql" >/dev/null
done
put() { # DEPT UNIT LEAF PERIOD VALUE
    psql -X -q -v ON_ERROR_STOP=1 "$(kp_pg_dsn "$it_work/pg" "dept_$1")" -c \
        "INSERT INTO indicator_value (unit_code, indicator_code, period, value) VALUES ('$2', '$3', '$4', $5)"
}

# 海城市 AS-HC (group g1):
#   result  (55): gdp_growth 12 → efficacy 100 (full-tree weight .55×.40×.30 = .066)
#                 politics 80 (direct; .55×.05 = .0275)
#   process (30): 90 (direct; .30)
#   leader  (10): 70 for the year (direct; .10)
#   public   (5): 60 for the year (direct; .05)
#   adjustments in March: 通报表扬 +1, 通报批评 −1, 约谈 −5 → −5
put stats AS-HC gdp_growth 2015-03 12
put office AS-HC politics 2015-03 80
put tasks AS-HC process 2015-03 90
put office AS-HC leader 2015 70
put survey AS-HC public 2015 60
put office AS-HC commendation 2015-03 1
put office AS-HC criticism 2015-03 1
put office AS-HC interview 2015-03 1
# 台安县 AS-TA, to rank against: gdp_growth 6 → 60, process 50, same weights for March.
put stats AS-TA gdp_growth 2015-03 6
put tasks AS-TA process 2015-03 50

q_profile() { # NAME PROFILE ARGS...
    local name=$1 profile=$2
    shift 2
    kp_cluster_adapter_profile "$name" "$KP_SOURCE_DIR/deploy/profiles/$profile.yaml" "$@"
}
q_profile stats stats SOURCE_DSN="$SDSN"
q_profile office office SOURCE_DSN="$(kp_pg_dsn "$it_work/pg" dept_office)"
q_profile tasks tasks SOURCE_DSN="$(kp_pg_dsn "$it_work/pg" dept_tasks)"
q_profile survey office SOURCE_DSN="$(kp_pg_dsn "$it_work/pg" dept_survey)" \
    'instance: survey' 'aid: survey' 'src: survey' "spool: $it_work/spool/survey.db"

kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
for d in stats office tasks survey; do kp_cluster_start "adapter-$d"; done

kp_wait_sql "$DSN" "SELECT count(*) FROM kp_observation" 10 90
row() { q "SELECT round(total::numeric, 6) || ' ' || round(coverage::numeric, 6) || ' ' || rank || ' ' || grade
             FROM kp_unit_score WHERE scheme = 'anshan-2015' AND period = '$2' AND unit = '$1'"; }

# March, 海城市: leader and public are yearly, so absent from the month; renormalised over the
# present leaves (W = .066 + .0275 + .30 = .3935):
#   (100×.066 + 80×.0275 + 90×.30) / .3935 = (6.6 + 2.2 + 27) / .3935 = 35.8 / .3935 = 90.978399
#   + 1 − 1 − 5 = 85.978399, coverage .3935, grade 良 (80 ≤ t < 90)
kp_wait_sql "$DSN" "SELECT round(total::numeric, 6) FROM kp_unit_score WHERE period = '2015-03' AND unit = 'AS-HC'" 85.978399 60
check "海城市 March: all monthly parts and the adjustments" "$(row AS-HC 2015-03)" "85.978399 0.393500 1 良"
# 台安县 March: (60×.066 + 50×.30) / (.066 + .30) = (3.96 + 15) / .366 = 51.803279, grade 差
check "台安县 March ranks second" "$(row AS-TA 2015-03)" "51.803279 0.366000 2 差"

# The year 2015, 海城市: every part present (W = .066 + .0275 + .30 + .10 + .05 = .5435):
#   (6.6 + 2.2 + 27 + 70×.10 + 60×.05) / .5435 = (35.8 + 7 + 3) / .5435 = 45.8 / .5435
#   = 84.268629; the March events pool into the year: − 5 → 79.268629, grade 中 (60 ≤ t < 80)
kp_wait_sql "$DSN" "SELECT round(total::numeric, 6) FROM kp_unit_score WHERE period = '2015' AND unit = 'AS-HC'" 79.268629 60
check "海城市 2015: result, process, leader, public, bonus and deductions" "$(row AS-HC 2015)" "79.268629 0.543500 1 中"
check "the parts of 海城市's year" \
    "$(q "SELECT string_agg(indicator || '=' || round(score::numeric, 6), ' ' ORDER BY indicator)
            FROM kp_indicator_score WHERE period = '2015' AND unit = 'AS-HC'
             AND indicator IN ('result', 'process', 'leader', 'public', 'commendation', 'criticism', 'interview')")" \
    "commendation=1.000000 criticism=1.000000 interview=5.000000 leader=70.000000 process=90.000000 public=60.000000 result=94.117647"
# result = (100×.40×.30 + 80×.05) / (.12 + .05) = 16 / .17 = 94.117647 (within 结果得分)
echo "anshan_all_parts: all checks passed"
