# shellcheck shell=bash
#
# finance.sh: the simulated finance bureau (市财政局) of the local cluster: a drop folder that
# receives the monthly budget-execution export (预算执行情况表) of every assessed unit the way
# a clerk saves it from Excel on a Chinese Windows: GBK, CRLF, a title row, the units by
# Chinese name only, a total row (合计). The cumulative execution rate of each unit grows over
# the year (about month/12 of its budget, faster or slower per unit); now and then a month is
# exported again, corrected (same 记录编号, higher 版本: revisions), and now and then a row is
# bad: an empty rate, 'N/A', or a unit name the scheme does not know. Every file is written
# under a temporary name and renamed into drop/ (atomic), as deploy/profiles/finance.yaml
# requires. Source it after tests/harness/cluster.sh; kp_cluster_init must have run (KP_BIN,
# KP_SCHEME_FILE). It defines functions only and changes no shell options.
#
#   sim_finance_start WORK
#       create WORK/finance/{drop,archive} and read the scheme's units (kpctl scheme: the
#       units the leaf budget_execution applies to); sets SIM_FINANCE_DROP and
#       SIM_FINANCE_ARCHIVE. Safe to call again with the same WORK.
#   sim_finance_step MONTH
#       write the export of MONTH (YYYY-MM, or 1-12 of the scheme's year) into drop/; every
#       third month also a corrected re-export of the month before (版本 + 1). Prints the
#       names of the files written. Bad rows: an even month has a row with rate N/A and a row
#       for 市机关事务管理局 (no unit of the scheme); a month 4n+1 (from May) has one with an empty
#       rate. SIM_FINANCE_BAD=0 leaves them out. Deterministic for a given month and version.
#   sim_finance_stop
#       forget the state (the folders and their files stay).
#
# With the adapter profile:
#   sim_finance_start "$work"
#   kp_cluster_adapter_profile finance "$top/deploy/profiles/finance.yaml" \
#       SCHEME_FILE="$KP_SCHEME_FILE"
#   kp_cluster_start adapter-finance
#   sim_finance_step 2015-01

sim_finance_start() {
    local work=$1
    if [ -z "$work" ]; then
        echo "sim_finance_start: usage: sim_finance_start WORK" >&2
        return 2
    fi
    if [ -z "${KP_BIN:-}" ] || [ -z "${KP_SCHEME_FILE:-}" ]; then
        echo "sim_finance_start: run kp_cluster_init first (KP_BIN, KP_SCHEME_FILE)" >&2
        return 2
    fi
    SIM_FINANCE_DIR=$work/finance
    SIM_FINANCE_DROP=$SIM_FINANCE_DIR/drop
    SIM_FINANCE_ARCHIVE=$SIM_FINANCE_DIR/archive
    mkdir -p "$SIM_FINANCE_DROP" "$SIM_FINANCE_ARCHIVE" "$SIM_FINANCE_DIR/state" || return 1
    SIM_FINANCE_YEAR=$(sed -n 's/^year: *\([0-9]\{4\}\).*/\1/p' "$KP_SCHEME_FILE" | head -n 1)
    [ -n "$SIM_FINANCE_YEAR" ] || SIM_FINANCE_YEAR=2015
    # code TAB name of each unit budget_execution applies to (every unit when the scheme
    # lists no cells for it)
    local scheme
    if ! scheme=$("$KP_BIN/kpctl/kpctl" scheme "$KP_SCHEME_FILE"); then
        echo "sim_finance_start: kpctl scheme $KP_SCHEME_FILE failed" >&2
        return 1
    fi
    printf '%s\n' "$scheme" | awk -F'\t' '
        $1 == "unit" { name[$2] = $3; order[++n] = $2 }
        $1 == "cell" && $3 == "budget_execution" { cell[$2] = 1; cells++ }
        END { for (k = 1; k <= n; k++) if (!cells || (order[k] in cell)) print order[k] "\t" name[order[k]] }
    ' >"$SIM_FINANCE_DIR/state/units.tsv"
    if [ ! -s "$SIM_FINANCE_DIR/state/units.tsv" ]; then
        echo "sim_finance_start: $KP_SCHEME_FILE lists no units" >&2
        return 1
    fi
}

# sim__finance_export MONTH(1-12) VERSION: the export as UTF-8 on stdout.
sim__finance_export() {
    local m=$1 ver=$2 bad=${SIM_FINANCE_BAD:-1}
    awk -F'\t' -v y="$SIM_FINANCE_YEAR" -v m="$m" -v ver="$ver" -v bad="$bad" '
        # a number in [0, 1) from a string: stable traits of a unit
        function h(s,   i, x) {
            x = 7
            for (i = 1; i <= length(s); i++) x = (x * 131 + index(ALPHA, substr(s, i, 1))) % 1000003
            return x / 1000003
        }
        BEGIN {
            ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789"
            srand(y * 10000 + m * 100 + ver)
            printf "%d年%d月预算执行情况表（鞍山市财政局）,,,,,,,,\r\n", y, m
            printf "序号,单位名称,统计期间,预算数(万元),执行数(万元),执行率(%%),记录编号,版本,导出时间\r\n"
        }
        {
            n++
            code = $1; name = $2
            budget = 500 + int(h(code "b") * 39500)           # 万元
            pace = 0.8 + 0.4 * h(code "p")                    # faster or slower than the calendar
            rate = m / 12 * 100 * pace + (rand() - 0.5) * 4 + (ver > 0 ? 1 + 2 * rand() : 0)
            if (rate < 0) rate = 0
            if (rate > 130) rate = 130
            spent = budget * rate / 100
            ref = sprintf("YSZX-%d%02d-%s", y, m, code)
            r = sprintf("%.2f", rate)
            if (bad && ver == 0 && m % 2 == 0 && n == (m * 7) % 60 + 3) r = "N/A"
            if (bad && ver == 0 && m % 4 == 1 && m > 1 && n == (m * 11) % 60 + 5) r = ""
            exported = sprintf("%d-%02d-%02d 09:%02d", (m == 12 ? y + 1 : y), (m == 12 ? 1 : m + 1), 2 + ver, n % 60)
            printf "%d,%s,%d年%d月,%.2f,%.2f,%s,%s,%d,%s\r\n", n, name, y, m, budget, spent, r, ref, ver, exported
            total_b += budget; total_s += spent
        }
        END {
            if (bad && ver == 0 && m % 2 == 0) {
                n++
                printf "%d,市机关事务管理局,%d年%d月,800.00,%.2f,%.2f,YSZX-%d%02d-JGSW,0,%d-%02d-02 09:59\r\n", n, y, m, 800 * m / 12, m / 12 * 100, y, m, (m == 12 ? y + 1 : y), (m == 12 ? 1 : m + 1)
            }
            printf ",合计,%d年%d月,%.2f,%.2f,%.2f,,,\r\n", y, m, total_b, total_s, total_s / total_b * 100
        }
    ' "$SIM_FINANCE_DIR/state/units.tsv"
}

# sim__finance_drop MONTH(1-12) VERSION: converts to GBK and renames into drop/.
sim__finance_drop() {
    local m=$1 ver=$2 name tmp
    name=$(printf '预算执行情况-%d-%02d' "$SIM_FINANCE_YEAR" "$m")
    [ "$ver" -gt 0 ] && name="$name-修订$ver"
    name="$name.csv"
    tmp="$SIM_FINANCE_DROP/.$name.tmp"
    if ! sim__finance_export "$m" "$ver" | iconv -f UTF-8 -t GBK >"$tmp"; then
        rm -f "$tmp"
        echo "sim_finance_step: writing $name failed" >&2
        return 1
    fi
    mv -f "$tmp" "$SIM_FINANCE_DROP/$name" || return 1
    echo "$name"
}

sim_finance_step() {
    local arg=$1 m ver f
    if [ -z "${SIM_FINANCE_DIR:-}" ]; then
        echo "sim_finance_step: run sim_finance_start first" >&2
        return 2
    fi
    case $arg in
    [0-9][0-9][0-9][0-9]-[0-9][0-9]) m=$((10#${arg#*-})) ;;
    [0-9] | [0-9][0-9]) m=$((10#$arg)) ;;
    *) m=0 ;;
    esac
    if [ "$m" -lt 1 ] || [ "$m" -gt 12 ]; then
        echo "sim_finance_step: usage: sim_finance_step YYYY-MM | 1-12" >&2
        return 2
    fi
    # the month's first export, once
    f=$SIM_FINANCE_DIR/state/v$m
    if [ ! -e "$f" ]; then
        sim__finance_drop "$m" 0 || return 1
        echo 0 >"$f"
    fi
    # every third month: the month before, corrected
    if [ $((m % 3)) -eq 0 ] && [ -e "$SIM_FINANCE_DIR/state/v$((m - 1))" ]; then
        f=$SIM_FINANCE_DIR/state/v$((m - 1))
        ver=$(($(cat "$f") + 1))
        sim__finance_drop $((m - 1)) "$ver" || return 1
        echo "$ver" >"$f"
    fi
}

sim_finance_stop() {
    unset SIM_FINANCE_DIR SIM_FINANCE_DROP SIM_FINANCE_ARCHIVE SIM_FINANCE_YEAR
    return 0
}
