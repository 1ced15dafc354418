#!/usr/bin/env bash
# Scenario: the finance profile (deploy/profiles/finance.yaml, the csv drop-folder source)
# turns a GBK export of the finance bureau, saved by Excel with a title row, Chinese unit
# names (one with full-width parentheses), 2015年3月 periods, CRLF and a total row, into exact
# budget_execution indicator scores in kp_indicator_score (issue 4; completion, target 100,
# cap 1: score = min(rate/100, 1) × 100). Its bad rows (N/A, an unknown unit, an empty rate)
# are not observations: they are dead letters of the adapter with file, line and reason, and
# rejection rows centrally; the file is archived with a summary that counts them. A corrected
# re-export (same 记录编号, higher 版本) replaces the earlier values. Then the adapter is
# killed with SIGKILL, a month of the simulated bureau (deploy/sim/finance.sh, 70 units) is
# dropped while it is down, and after the restart every good row of it is scored exactly once.
. "$(dirname "$0")/lib.sh"
. "$KP_SOURCE_DIR/deploy/sim/finance.sh"

sim_finance_start "$it_work"
DROP=$SIM_FINANCE_DROP
ARCH=$SIM_FINANCE_ARCHIVE
SPOOL=$it_work/spool/finance.db

kp_cluster_adapter_profile finance "$KP_SOURCE_DIR/deploy/profiles/finance.yaml" \
    SCHEME_FILE="$KP_SCHEME_FILE"
"$KP_BUILD_DIR/adapters/kp-adapter" -c "$it_work/etc/adapter-finance.yaml" --check-config >/dev/null
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
kp_cluster_start adapter-finance

# drop_gbk NAME: stdin (UTF-8) as GBK into the drop folder, written aside and renamed in
drop_gbk() {
    iconv -f UTF-8 -t GBK >"$DROP/.$1.tmp"
    mv "$DROP/.$1.tmp" "$DROP/$1"
}

# summary NAME KEY: an integer of NAME.summary.json (one key per line: JSON_INDENT)
summary() { sed -n "s/^  \"$2\": \([0-9]*\),*$/\1/p" "$ARCH/$1.summary.json"; }
dead() {
    sqlite3 "$SPOOL" "SELECT group_concat(line || ':' || code, ' ') FROM
                        (SELECT line, code FROM dead_row WHERE file = '$1' ORDER BY line)"
}
score() {
    q "SELECT value || ' ' || round(score::numeric, 6) FROM kp_indicator_score
        WHERE scheme = 'anshan-2015' AND period = '$1' AND unit = '$2' AND indicator = 'budget_execution'"
}

F1=预算执行情况-2015-03.csv
sed 's/$/\r/' <<'CSV' | drop_gbk "$F1"
2015年3月预算执行情况表（鞍山市财政局）,,,,,,,
序号,单位名称,统计期间,预算数(万元),执行数(万元),执行率(%),记录编号,版本
1,海城市政府,2015年3月,20000.00,5000.00,25.00,YS-201503-AS-HC,0
2,台安县政府,2015年3月,10000.00,10000.00,100.00,YS-201503-AS-TA,0
3,岫岩县政府,2015年3月,10000.00,12340.00,123.40,YS-201503-AS-XY,0
4,市民委（市宗教局）,2015年3月,800.00,700.00,87.50,YS-201503-AS-MZW,0
5,铁东区政府,2015年3月,9000.00,,N/A,YS-201503-AS-TD,0
6,某某局,2015年3月,100.00,50.00,50.00,YS-201503-XX,0
7,铁西区政府,2015年3月,9000.00,,,YS-201503-AS-TX,0
8,"立山区政府",2015年3月,7000.00,0.00,0,YS-201503-AS-LS,0
,合计,2015年3月,75900.00,28090.00,37.01,,
CSV

kp_wait_sql "$DSN" "SELECT count(*) FROM kp_indicator_score WHERE period = '2015-03' AND indicator = 'budget_execution'" 5 90
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_rejection WHERE src = 'finance'" 3 30
check "海城市 25%" "$(score 2015-03 AS-HC)" "25 25.000000"
check "台安县 100%" "$(score 2015-03 AS-TA)" "100 100.000000"
check "岫岩县 123.4% capped at 100" "$(score 2015-03 AS-XY)" "123.4 100.000000"
check "市民委（市宗教局） by its full-width name" "$(score 2015-03 AS-MZW)" "87.5 87.500000"
check "立山区 0%" "$(score 2015-03 AS-LS)" "0 0.000000"
check "observations: the good rows only, with provenance" \
    "$(q "SELECT string_agg(unit || ':' || ref || ':' || rev || ':' || adapter, ' ' ORDER BY unit)
           FROM kp_observation WHERE src = 'finance'")" \
    "AS-HC:YS-201503-AS-HC:0:finance AS-LS:YS-201503-AS-LS:0:finance AS-MZW:YS-201503-AS-MZW:0:finance AS-TA:YS-201503-AS-TA:0:finance AS-XY:YS-201503-AS-XY:0:finance"
check "bad rows are no observations" \
    "$(q "SELECT count(*) FROM kp_observation WHERE unit IN ('AS-TD', 'AS-TX') OR ref = 'YS-201503-XX'")" 0
check "bad rows are rejections centrally" \
    "$(q "SELECT string_agg(ref || ':' || code, ' ' ORDER BY ref) FROM kp_rejection WHERE src = 'finance'")" \
    "YS-201503-AS-TD:bad_type YS-201503-AS-TX:missing_field YS-201503-XX:missing_field"

# the file: archived with its summary, nothing left in the drop folder
for _ in $(seq 1 50); do [ -e "$ARCH/$F1.summary.json" ] && break; sleep 0.2; done
check "archived" "$(find "$DROP" -mindepth 1 | wc -l) $(test -e "$ARCH/$F1" && echo yes)" "0 yes"
check "summary counts" \
    "$(summary "$F1" rows_read) $(summary "$F1" rows_sent) $(summary "$F1" rows_refused) $(summary "$F1" rows_skipped) $(summary "$F1" header_line)" \
    "9 5 3 1 2"
check "summary lines" "$(sed -n 's/^ *"line": \([0-9]*\),*$/\1/p' "$ARCH/$F1.summary.json" | tr '\n' ' ')" "7 8 9 "
check "summary encoding" "$(grep -c '"encoding": "gbk"' "$ARCH/$F1.summary.json")" 1
check "dead letters with file, line and reason" "$(dead "$F1")" "7:bad_field 8:unknown_unit 9:missing_field"
check "dead letter text" \
    "$(sqlite3 "$SPOOL" "SELECT msg FROM dead_row WHERE file = '$F1' AND line = 8")" \
    "unit name \"某某局\" (column 单位名称) is not a unit of scheme anshan-2015"

# A corrected re-export: 海城市 25 → 60 (版本 1), 铁东区 N/A → 70 (版本 1).
F2=预算执行情况-2015-03-修订1.csv
sed 's/$/\r/' <<'CSV' | drop_gbk "$F2"
序号,单位名称,统计期间,预算数(万元),执行数(万元),执行率(%),记录编号,版本
1,海城市政府,2015年3月,20000.00,12000.00,60.00,YS-201503-AS-HC,1
5,铁东区政府,2015年3月,9000.00,6300.00,70.00,YS-201503-AS-TD,1
CSV
kp_wait_sql "$DSN" "SELECT round(score::numeric, 6) FROM kp_indicator_score WHERE period = '2015-03' AND unit = 'AS-TD' AND indicator = 'budget_execution'" 70.000000 60
kp_wait_sql "$DSN" "SELECT round(score::numeric, 6) FROM kp_indicator_score WHERE period = '2015-03' AND unit = 'AS-HC' AND indicator = 'budget_execution'" 60.000000 30
check "both revisions of 海城市 kept" \
    "$(q "SELECT string_agg(rev || ':' || value, ' ' ORDER BY rev) FROM kp_observation WHERE ref = 'YS-201503-AS-HC'")" \
    "0:25 1:60"

# kill -9 of the adapter; a month of the simulated bureau arrives meanwhile (70 units, one
# row N/A and one for a unit the scheme does not know); after the restart it is read once.
kp_cluster_kill adapter-finance KILL
written=$(sim_finance_step 2015-04)
check "the simulator wrote one export" "$written" "预算执行情况-2015-04.csv"
kp_cluster_start adapter-finance
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_indicator_score WHERE period = '2015-04' AND indicator = 'budget_execution'" 69 90
for _ in $(seq 1 50); do [ -e "$ARCH/$written.summary.json" ] && break; sleep 0.2; done
check "simulated month: summary" \
    "$(summary "$written" rows_read) $(summary "$written" rows_sent) $(summary "$written" rows_refused) $(summary "$written" rows_skipped)" \
    "72 69 2 1"
check "simulated month: one observation per unit" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT unit) FROM kp_observation WHERE period = '2015-04'")" "69 69"
check "simulated month: every score is min(rate, 100)" \
    "$(q "SELECT count(*) FROM kp_indicator_score WHERE period = '2015-04' AND indicator = 'budget_execution'
           AND abs(score - least(value, 100)) > 1e-9")" 0
check "simulated month: dead letters" "$(dead "$written" | sed 's/[0-9]*:/L:/g')" "L:bad_field L:unknown_unit"
kp_wait_sql "$DSN" "SELECT count(*) FROM kp_rejection WHERE src = 'finance'" 5 30
check "every batch recorded once" "$(q "SELECT count(*) = count(DISTINCT (adapter, seq)) FROM batch")" "t"
check "the adapter is still running" "$(kp_cluster_alive adapter-finance && echo yes)" yes
echo "finance_csv: all checks passed"
