#!/usr/bin/env bash
# bench_e2e.sh: the whole pipeline measured in one run (issue 9). Starts a throwaway PostgreSQL
# (tests/harness/pg.sh) and kp-broker, kp-collector and kp-scorer (tests/harness/cluster.sh,
# CURVE on every hop unless --insecure) on a generated scheme like bench_engine's (70 units in
# four groups, 5 areas, 30 sub-areas, 240 value leaves V000-V239 and 60 event-rate leaves
# E000-E059, all from src `bench`), then measures:
#   1. the limit: COPY of the same number of observations of the same shape into a table of the
#      definition the scorer writes (`observation`, behind kp_observation; a copy by pg_dump in
#      a database of its own, kp_limit, emptied again after each COPY), as one transaction
#      three times, once before the two runs of step 2 and twice after them, the limit being the
#      median, and once as one transaction per batch;
#   2. end-to-end maximum throughput: kp_loadgen (tests/bench/kp_loadgen.c, a PROTOCOL.md
#      client) at rate 0 with the collector's window, acked = committed observations per second,
#      and its ratio to the COPY limit, once with values on random cells (--order random, every
#      value on its own cells: the most score rows per observation) and once in the order a
#      statistics system exports them (--order source: unit by unit, indicators in order); on
#      random cells also the CPU time of the scorer and of its database session per 1,000
#      observations, and the machine's iowait and steal time (the machine's pace in that run);
#   3. the latency from send to ack (after the scorer's commit) at 1,000 and 10,000 obs/s (random
#      cells), and at 10,000 obs/s in source order; at 10,000 obs/s on random cells also the CPU
#      of the scorer and of its database session, the machine's iowait and steal time, and its
#      slow spells (batches over 50 ms from when due; in source order too) with the checkpoints
#      and autovacuum runs they line up with (tests/bench/slow_spells.sh); each fixed-rate run
#      also from when each batch was due (a full window holds batches back);
#      before the run at 10,000 obs/s, the machine's floor: pgbench's latency of one-row INSERT
#      transactions at 100/s, each a durable commit; and PostgreSQL alone at that rate: pgbench
#      inserting the same shape of observations into the same table, a batch per transaction;
#   4. the scoring engine alone (bench_engine, its JSON obs_per_s);
#   5. each daemon's peak RSS (VmHWM) at the end, and the scorer's during the two runs at
#      10,000 obs/s alone.
# The COPY and the runs of 2 and 3 but the one at 1,000 obs/s also give the WAL they wrote per
# observation (pg_current_wal_insert_lsn before and after). Before all of them, 1 GB of WAL is
# written and checkpointed away (--wal-warm), with min_wal_size as large, so that the runs reuse
# WAL segments as a running cluster does, instead of creating and zero-filling new ones as a new
# cluster must (docs/BENCHMARKS.md round 18).
# It checks (no time is asserted, STYLE.md "Tests") that every batch sent was acked with no
# rejection, and that the observation table holds exactly the acked observations of each run.
# Prints one markdown table and one JSON line {"bench":"e2e", ...}.
#
#   bench_e2e.sh [--obs N] [--seconds S] [--batch N] [--rate-batch N] [--window W]
#                [--insecure] [--smoke] [--profile DIR] [--profile-run max|source|10k]
#                [--pg-conf FILE|none] [--pg-set KEY=VALUE]... [--wal-warm MB] [--keep]
#
#   --obs N         observations of the COPY and of the maximum-throughput run (default 500000)
#   --seconds S     length of each fixed-rate run (default 30)
#   --batch N       observations per batch of the maximum-throughput run and the per-batch COPY
#                   (default 1000)
#   --rate-batch N  observations per batch of the fixed-rate runs (default 100: 10 and 100
#                   batches per second)
#   --window W      batches in flight (default 0: the collector's welcome.max_inflight, 8)
#   --insecure      plain TCP on every hop (KP_INSECURE=1), to compare with CURVE
#   --smoke         a tiny size for CI (bench.e2e_smoke)
#   --profile DIR   pg_stat_statements on (with plans counted), `perf record -g` of each daemon
#                   and of the scorer's PostgreSQL backend during one run (--profile-run);
#                   reports in DIR: perf-*.txt, pg_stat_statements.txt (calls, plans, times),
#                   pg_stats.txt (WAL, rows written per table), trace-max.txt (per batch:
#                   seq, send ms, latency ms, obs, sends, latency from when due ms)
#   --profile-run R the run --profile records: max (default: the maximum throughput on random
#                   cells), source (the same in source order) or 10k (10,000 obs/s on random
#                   cells)
#   --pg-conf F     the settings a deployment is advised to use (default
#                   deploy/postgresql/kaoping.conf: autovacuum_naptime 5s since round 21,
#                   wal_compression lz4 since round 22),
#                   appended to postgresql.conf before --pg-set's; `none`: PostgreSQL's defaults
#   --pg-set K=V    a postgresql.conf setting on top of tests/harness/pg.sh's (fsync and
#                   synchronous_commit on) and of the benchmark's shared_buffers = 128MB
#                   (PostgreSQL's default; the test harness shrinks it to 32MB), e.g.
#                   --pg-set shared_buffers=1GB; applies to the COPY and the pipeline alike
#                   (log_timezone and log_checkpoints are the bench's: UTC, on)
#   --wal-warm MB   WAL written (a table created and dropped) and checkpointed before the
#                   measurements, and min_wal_size set to as much, so that PostgreSQL keeps and
#                   recycles those segments (default 1024; 0, as before round 18 and in
#                   --smoke: a new cluster's WAL, each segment created and zero-filled in the
#                   runs; docs/BENCHMARKS.md rounds 12 and 18 compare the two)
#   --keep          keep the work directory and print its path: logs (PostgreSQL's too, as
#                   logs/postgresql.log), configs, and a trace of every load generator run
#                   (trace-AID.txt, the columns of trace-max.txt)
# Needs KP_BUILD_DIR and KP_SOURCE_DIR (default: this checkout and its build/).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KP_SOURCE_DIR=${KP_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
KP_BUILD_DIR=${KP_BUILD_DIR:-$KP_SOURCE_DIR/build}
OBS=500000
RATE_SECONDS=30
BATCH=1000
RATE_BATCH=100
WINDOW=0
SMOKE=0
PROFILE=""
PROFILE_RUN=max
KEEP=0
WAL_WARM_MB=1024
PG_SET=()
PG_CONF=""
while [ $# -gt 0 ]; do
    case $1 in
    --obs) OBS=$2; shift 2 ;;
    --seconds) RATE_SECONDS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --rate-batch) RATE_BATCH=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    --insecure) export KP_INSECURE=1; shift ;;
    --smoke) SMOKE=1; WAL_WARM_MB=0; OBS=2000; RATE_SECONDS=2; BATCH=100; RATE_BATCH=20; shift ;;
    --wal-warm) WAL_WARM_MB=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --profile-run)
        PROFILE_RUN=$2
        case $PROFILE_RUN in max | source | 10k) ;; *) echo "--profile-run: max, source or 10k" >&2; exit 2 ;; esac
        shift 2 ;;
    --keep) KEEP=1; shift ;;
    --pg-set) PG_SET+=("$2"); shift 2 ;;
    --pg-conf) PG_CONF=$2; shift 2 ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
        exit 2
        ;;
    esac
done
# Sizes are whole numbers; those that divide or count batches are at least 1.
whole() { # OPTION VALUE MIN
    case $2 in '' | *[!0-9]*) echo "bench_e2e: $1: a whole number, not '$2'" >&2; exit 2 ;; esac
    [ "$2" -ge "$3" ] || { echo "bench_e2e: $1: at least $3, not $2" >&2; exit 2; }
}
whole --obs "$OBS" 1
whole --seconds "$RATE_SECONDS" 1
whole --batch "$BATCH" 1
whole --rate-batch "$RATE_BATCH" 1
whole --window "$WINDOW" 0
whole --wal-warm "$WAL_WARM_MB" 0
# PostgreSQL's default shared_buffers under the caller's settings; --smoke keeps the harness's.
[ "$SMOKE" = 1 ] || PG_SET=(shared_buffers=128MB ${PG_SET[@]+"${PG_SET[@]}"})
# The warmed segments kept: without it the benchmark's own CHECKPOINTs (short distances) lower
# PostgreSQL's estimate of the WAL a cycle needs, and it removes segments instead of recycling.
# (PostgreSQL's floor: two segments, 32 MB.)
if [ "$WAL_WARM_MB" -gt 0 ]; then
    PG_SET=("min_wal_size=$((WAL_WARM_MB > 32 ? WAL_WARM_MB : 32))MB" ${PG_SET[@]+"${PG_SET[@]}"})
fi
[ -n "$PG_CONF" ] || PG_CONF=$KP_SOURCE_DIR/deploy/postgresql/kaoping.conf
[ "$PG_CONF" = none ] || [ -r "$PG_CONF" ] || { echo "bench_e2e: --pg-conf $PG_CONF: not readable" >&2; exit 2; }
LOADGEN=$KP_BUILD_DIR/tests/bench/kp_loadgen
ENGINE=$KP_BUILD_DIR/tests/bench/bench_engine
for b in "$LOADGEN" "$ENGINE" "$KP_BUILD_DIR/scorer/kp-scorer" "$KP_BUILD_DIR/collector/kp-collector" \
    "$KP_BUILD_DIR/broker/kp-broker" "$KP_BUILD_DIR/kpctl/kpctl"; do
    [ -x "$b" ] || { echo "bench_e2e: $b not built (cmake --build $KP_BUILD_DIR)" >&2; exit 1; }
done
CURVE=true
[ "${KP_INSECURE:-0}" = 1 ] && CURVE=false
. "$KP_SOURCE_DIR/tests/harness/pg.sh"
. "$KP_SOURCE_DIR/tests/harness/cluster.sh"
. "$KP_SOURCE_DIR/tests/bench/slow_spells.sh"

work=$(mktemp -d /tmp/kp-bench-e2e.XXXXXX)
chmod 755 "$work" # the postgres user runs the throwaway cluster under it
perf_pids=()
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${perf_pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    kp_cluster_stop_all 2>/dev/null || true
    if [ $rc -ne 0 ]; then
        for f in "$work"/logs/*.log; do
            [ -e "$f" ] && { echo "== $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    if [ "$KEEP" = 1 ] && [ -f "$work/pg/log" ]; then cp "$work/pg/log" "$work/logs/postgresql.log"; fi
    kp_pg_destroy "$work/pg" >/dev/null 2>&1 || true
    if [ "$KEEP" = 1 ]; then
        echo "bench_e2e: kept $work" >&2
    else
        rm -rf -- "$work"
    fi
    exit $rc
}
trap cleanup EXIT INT TERM
say() { echo "bench_e2e: $*" >&2; }
now() { date +%s.%N; }
jget() { # KEY JSON: a number or string value of a flat JSON line
    printf '%s\n' "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" | head -n 1
}
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print 0 }'; }

# ---- the scheme: bench_engine's shape, every leaf from src `bench` ----------------------------
SCHEME_FILE=$work/bench-e2e.yaml
{
    printf 'scheme: bench-e2e\nname: 端到端基准\nyear: 2015\nderive: [quarter, half, year]\n'
    printf 'grades:\n  bands: [{grade: 优, min: 90}, {grade: 良, min: 80}, {grade: 中, min: 60}, {grade: 差}]\n'
    printf 'groups:\n'
    u=0
    for g in 1:3 2:4 3:3 4:60; do
        printf '  - code: g%s\n    name: 组%s\n    units:\n' "${g%%:*}" "${g%%:*}"
        for _ in $(seq 1 "${g#*:}"); do
            printf '      - {code: U%03d, name: 单位%d}\n' "$u" "$u"
            u=$((u + 1))
        done
    done
    printf 'indicators:\n'
    v=0 e=0 sub=0
    for a in 0:30 1:25 2:20 3:15 4:10; do
        printf '  - code: A%s\n    name: 领域%s\n    weight: %s\n    total: 6\n    children:\n' \
            "${a%%:*}" "${a%%:*}" "${a#*:}"
        for _ in 1 2 3 4 5 6; do
            printf '      - code: S%03d\n        name: 子领域%d\n        weight: 1\n        total: 100\n        children:\n' "$sub" "$sub"
            for w in 15 15 10 10 10 10 10 5; do
                printf '          - {code: V%03d, name: 指标V%d, weight: %d, method: direct, src: [bench], periods: [month], rollup: avg, min: 0, max: 100}\n' "$v" "$v" "$w"
                v=$((v + 1))
            done
            for w in 10 5; do
                printf '          - {code: E%03d, name: 指标E%d, weight: %d, method: direct, input: rate, src: [bench], periods: [month], min: 0, max: 1}\n' "$e" "$e" "$w"
                e=$((e + 1))
            done
            sub=$((sub + 1))
        done
    done
} >"$SCHEME_FILE"
UNITS=U:70
VALUES=V:240
EVENTS=E:60
EVENT_SHARE=0.25

# ---- PostgreSQL and the cluster -----------------------------------------------------------
kp_pg_start "$work/pg" "$(kp_pg_free_port)" >/dev/null
if [ -n "$PROFILE" ] || [ ${#PG_SET[@]} -gt 0 ] || [ "$PG_CONF" != none ]; then
    if [ "$PG_CONF" != none ]; then
        printf '# %s\n' "$PG_CONF"
        cat "$PG_CONF"
    fi >>"$work/pg/data/postgresql.conf"
    for kv in ${PG_SET[@]+"${PG_SET[@]}"}; do
        printf "%s = '%s'\n" "${kv%%=*}" "${kv#*=}"
    done >>"$work/pg/data/postgresql.conf"
    if [ -n "$PROFILE" ]; then
        mkdir -p "$PROFILE"
        PROFILE=$(cd "$PROFILE" && pwd)
        cat >>"$work/pg/data/postgresql.conf" <<EOF
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_planning = on
track_io_timing = on
EOF
    fi
    kp_pg_stop "$work/pg"
    kp_pg_start "$work/pg" "$(cat "$work/pg/port")" >/dev/null
    [ -z "$PROFILE" ] || kp_pg_psql "$work/pg" -c "CREATE EXTENSION pg_stat_statements"
fi
# Checkpoints and autovacuum's runs of 0.25 s or more logged in UTC, for slow_spells (ALTER
# SYSTEM: no restart). The time zone and the checkpoints it needs; autovacuum's threshold only
# when --pg-set does not give one, which would otherwise lose to postgresql.auto.conf.
logset=(-c "ALTER SYSTEM SET log_timezone = 'UTC'" -c "ALTER SYSTEM SET log_checkpoints = on")
[[ " ${PG_SET[*]-} " == *" log_autovacuum_min_duration="* ]] ||
    logset+=(-c "ALTER SYSTEM SET log_autovacuum_min_duration = '250ms'")
kp_pg_psql "$work/pg" -qtA "${logset[@]}" -c "SELECT pg_reload_conf()" >/dev/null
PG_SETTINGS=$(kp_pg_psql "$work/pg" -tA -c "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'wal_buffers', 'min_wal_size', 'max_wal_size', 'synchronous_commit', 'fsync', 'autovacuum_naptime', 'wal_compression')")
DSN=$(kp_pg_dsn "$work/pg" kaoping)
kp_cluster_init "$work" "$KP_BUILD_DIR" "$KP_SOURCE_DIR" "$SCHEME_FILE" "$DSN"
echo "log_level: warn" >>"$KP_WORK/etc/scorer.yaml"
[ "$WINDOW" -gt 0 ] && echo "max_inflight: $WINDOW" >>"$KP_WORK/etc/collector.yaml"
# The load generator's adapter ids: keys and grants as any adapter's (kp_cluster_adapter_keys)
AIDS="bench-max bench-src bench-1k bench-10k bench-10ks"
for aid in $AIDS; do
    printf 'aid: %s\nsrc: bench\n' "$aid" >"$KP_WORK/etc/adapter-$aid.yaml"
    kp_cluster_adapter_keys "$aid"
done
kp_cluster_start broker
kp_cluster_start collector
kp_cluster_start scorer
for i in $(seq 1 300); do
    curl -fsS "http://$(kp_cluster_admin scorer)/readyz" >/dev/null 2>&1 &&
        curl -fsS "http://$(kp_cluster_admin collector)/readyz" >/dev/null 2>&1 && break
    sleep 0.1
    [ "$i" -lt 300 ] || { say "the cluster did not become ready"; exit 1; }
done
loadgen() { # AID ARGS...: one kp_loadgen run, its JSON line on stdout
    local aid=$1 keys=()
    shift
    if [ "$CURVE" = true ]; then
        keys=(--secret "$KP_KEYS/adapter-$aid.secret" --server-key "$KP_KEYS/collector.key")
    fi
    if [ "$KEEP" = 1 ] && [[ " $* " != *" --trace "* ]]; then
        keys+=(--trace "$work/trace-$aid.txt")
    fi
    "$LOADGEN" --collector "tcp://127.0.0.1:$KP_COL_PORT" "${keys[@]}" --aid "$aid" \
        --scheme bench-e2e --src bench --units "$UNITS" --values "$VALUES" \
        --event-indicators "$EVENTS" --events "$EVENT_SHARE" --quiet "$@"
}
psql_q() { kp_pg_psql "$work/pg" -tA -c "$1"; }
# WAL written between two LSNs, in bytes per observation: wal_per_obs LSN0 LSN1 OBS
wal_lsn() { psql_q "SELECT pg_current_wal_insert_lsn()"; }
wal_per_obs() { psql_q "SELECT round(pg_wal_lsn_diff('$2', '$1') / greatest($3, 1))"; }

# ---- 0. WAL segments to recycle -------------------------------------------------------------
# A new cluster creates each 16 MB WAL segment when it first needs it and zero-fills it in the
# backend that does (XLogFileInit: 12% of the backend's samples in round 11's profile, and
# stalls of tens of ms at 10,000 obs/s). A running one renames the segments a checkpoint no
# longer needs. Rows of ~2 kB make about 1 MB of WAL per 500.
if [ "$WAL_WARM_MB" -gt 0 ]; then
    say "WAL: $WAL_WARM_MB MB written and checkpointed, to be recycled"
    psql_q "CREATE TABLE kp_bench_wal_warm AS SELECT repeat(md5(g::text), 60) AS x FROM generate_series(1, $((WAL_WARM_MB * 500))) g" >/dev/null
    psql_q "DROP TABLE kp_bench_wal_warm" >/dev/null
    psql_q "CHECKPOINT" >/dev/null
fi

# ---- 1. the COPY limit ------------------------------------------------------------------------
# The same rows as kp_loadgen makes: 70 units, 240 value and 60 event indicators, a quarter
# events, one month per batch, refs and revisions of the same length.
say "COPY limit: $OBS observations"
mkdir -p "$work/copy"
awk -v n="$OBS" -v b="$BATCH" -v dir="$work/copy" 'BEGIN {
    srand(1); file = dir "/all.tsv"; chunk = 0
    for (i = 0; i < n; i++) {
        if (i % b == 0) {
            m = int(rand() * 12) + 1; seq = sprintf("1764%012d", int(i / b))
            if (cf) close(cf)
            cf = sprintf("%s/c%06d.tsv", dir, chunk++)
        }
        u = sprintf("U%03d", int(rand() * 70)); p = sprintf("2015-%02d", m)
        if (rand() < 0.25) {
            ind = sprintf("E%03d", int(rand() * 60)); v = rand() < 0.9 ? 1 : 0
            ref = sprintf("bench-copy-e%s-%d", seq, i % b); rev = 0
        } else {
            ind = sprintf("V%03d", int(rand() * 240)); v = int(rand() * 1000) / 10
            ref = "bench-copy-" u "-" ind "-" p; rev = sprintf("1764000000%09d", i)
        }
        line = "bench-copy\tbench\t" ref "\t" rev "\t" u "\t" ind "\t" p "\t" v "\t1\t2026-01-01 00:00:00+00\tbench-copy\t" seq
        print line > file; print line > cf
    }
}'
COLS="scheme, src, ref, rev, unit, indicator, period, value, w, observed_at, adapter, seq"
# The limit's own database: a table of observation's definition (pg_dump), emptied after each
# COPY, so that it can be measured again after the runs of step 2 without touching their rows.
psql_q "CREATE DATABASE kp_limit" >/dev/null
"$KP_PG_BINDIR/pg_dump" -s -t observation "$(kp_pg_dsn "$work/pg")" |
    kp_pg_psql "$work/pg" -d kp_limit >/dev/null
lim_q() { kp_pg_psql "$work/pg" -d kp_limit -tA -c "$1"; }
# copy_run PSQL_ARGS...: psql's \copy (-c) or a script of them (-f) into the empty table, after
# a CHECKPOINT; prints "OBS_PER_S SECONDS WAL_B_PER_OBS", or nothing when a step failed (the
# caller then stops). It empties the table again, for the next COPY and so that its buffers do
# not go to the checkpoints of later runs.
copy_run() {
    local w0 t0 t1 rows secs out
    psql_q "CHECKPOINT" >/dev/null || return 1
    w0=$(wal_lsn)
    t0=$(now)
    kp_pg_psql "$work/pg" -d kp_limit "$@" >/dev/null || return 1
    t1=$(now)
    rows=$(lim_q "SELECT count(*) FROM observation WHERE scheme = 'bench-copy'")
    [ "$rows" = "$OBS" ] || { say "COPY stored $rows rows, not $OBS"; return 1; }
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    out="$(fdiv "$OBS" "$secs") $secs $(wal_per_obs "$w0" "$(wal_lsn)" "$OBS")"
    lim_q "TRUNCATE observation" >/dev/null || return 1
    echo "$out"
}
# The limit: all the rows in one transaction.
copy_limit() { copy_run -c "\\copy observation ($COLS) FROM '$work/copy/all.tsv'"; }
read -r COPY1_RATE COPY1_S COPY_WAL <<<"$(copy_limit)"
[ -n "$COPY_WAL" ] || exit 1
# One transaction (one durable commit) per batch, as the scorer commits.
for f in "$work"/copy/c*.tsv; do
    printf '\\copy observation (%s) FROM '"'"'%s'"'"'\n' "$COLS" "$f"
done >"$work/copy/chunks.sql"
read -r COPYB_RATE COPYB_S _ <<<"$(copy_run -f "$work/copy/chunks.sql")"
[ -n "$COPYB_S" ] || exit 1
rm -f -- "$work"/copy/c*.tsv "$work/copy/chunks.sql"
# The pipeline's table as it was before round 23, when the COPYs went into it: analyzed empty.
psql_q "VACUUM ANALYZE observation" >/dev/null
psql_q "CHECKPOINT" >/dev/null

# --profile: the statistics reset and perf attached before the chosen run, the reports after it
prof_start() {
    [ -n "$PROFILE" ] && [ "$1" = "$PROFILE_RUN" ] || return 0
    psql_q "SELECT pg_stat_statements_reset()" >/dev/null
    psql_q "SELECT pg_stat_reset(); SELECT pg_stat_reset_shared('bgwriter'); SELECT pg_stat_reset_shared('wal')" >/dev/null
    if command -v perf >/dev/null; then
        backend=$(psql_q "SELECT pid FROM pg_stat_activity WHERE datname = 'kaoping' AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY backend_start LIMIT 1")
        for d in collector broker scorer; do
            perf record -g -o "$PROFILE/perf-$d.data" -p "$(cat "$KP_WORK/pids/$d")" \
                >"$PROFILE/perf-$d.log" 2>&1 &
            perf_pids+=($!)
        done
        if [ -n "$backend" ]; then
            perf record -g -o "$PROFILE/perf-postgres.data" -p "$backend" >"$PROFILE/perf-postgres.log" 2>&1 &
            perf_pids+=($!)
        fi
        sleep 1
    fi
}
prof_stop() {
    [ -n "$PROFILE" ] && [ "$1" = "$PROFILE_RUN" ] || return 0
    for p in "${perf_pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${perf_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    perf_pids=()
    psql_q "SELECT calls, plans, round(total_plan_time::numeric, 1) AS plan_ms, round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms, rows, round((blk_read_time + blk_write_time)::numeric, 1) AS io_ms, wal_bytes, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20" \
        >"$PROFILE/pg_stat_statements.txt"
    sleep 1 # the backend's table counters reach the statistics
    {
        echo "# pg_stat_wal"
        kp_pg_psql "$work/pg" -x -c "SELECT * FROM pg_stat_wal"
        echo "# pg_stat_bgwriter"
        kp_pg_psql "$work/pg" -x -c "SELECT * FROM pg_stat_bgwriter"
        echo "# tables (rows written during the run, size at the end)"
        kp_pg_psql "$work/pg" -c "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, pg_size_pretty(pg_total_relation_size(relid)) AS size FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY n_tup_ins + n_tup_upd DESC"
        echo "# settings"
        echo "$PG_SETTINGS"
    } >"$PROFILE/pg_stats.txt" 2>&1 || true
    for d in collector broker scorer postgres; do
        [ -s "$PROFILE/perf-$d.data" ] || continue
        perf report -i "$PROFILE/perf-$d.data" --stdio --no-children --percent-limit 1 \
            >"$PROFILE/perf-$d.txt" 2>/dev/null || true
        perf report -i "$PROFILE/perf-$d.data" --stdio --children --percent-limit 2 -g none \
            >"$PROFILE/perf-$d-children.txt" 2>/dev/null || true
    done
}

# ---- 2. end to end, maximum throughput -------------------------------------------------------
# The scorer's database session: its oldest client backend, the one that runs the batch
# transactions. CPU ticks of a process; the machine's own time waiting for I/O and stolen by the
# hypervisor, in % of all CPU time since a cpuline (proc(5): the cpu line's iowait and steal).
SESSION=$(psql_q "SELECT pid FROM pg_stat_activity WHERE datname = 'kaoping' AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY backend_start LIMIT 1")
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpuline() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $6, $9 }' /proc/stat; }
machine_pct() { # CPULINE_BEFORE: "iowait steal" in % since then
    echo "$1 $(cpuline)" | awk '{ t = $4 - $1; if (t > 0) printf "%.1f %.1f", ($5 - $2) / t * 100, ($6 - $3) / t * 100; else print "0 0" }'
}
prof_start max
say "end to end, rate 0: $OBS observations in batches of $BATCH (CURVE: $CURVE)"
daemon_ticks() { for d in collector broker scorer; do ticks "$(cat "$KP_WORK/pids/$d")"; done; }
cpu0=$(daemon_ticks)
# The same work (a fixed seed) took more CPU time in the slower maximum runs (docs/BENCHMARKS.md
# round 24): CPU ms per 1,000 observations of the scorer and its session show the machine's pace.
ses0=$(ticks "$SESSION")
mach0=$(cpuline)
trace=()
[ -z "$PROFILE" ] || trace=(--trace "$PROFILE/trace-max.txt")
w0=$(wal_lsn)
MAX=$(loadgen bench-max --obs "$OBS" --batch "$BATCH" --window "$WINDOW" "${trace[@]}") ||
    { say "kp_loadgen: $MAX"; exit 1; }
MAX_WAL=$(wal_per_obs "$w0" "$(wal_lsn)" "$(jget acked_obs "$MAX")")
read -r MAX_IOWAIT MAX_STEAL <<<"$(machine_pct "$mach0")"
ses1=$(ticks "$SESSION")
cpu1=$(daemon_ticks)
read -r MAXC_SCR MAXC_SES <<<"$(echo "$(tail -n 1 <<<"$cpu0") $(tail -n 1 <<<"$cpu1") $ses0 $ses1" |
    awk -v n="$(jget acked_obs "$MAX")" -v hz="$(getconf CLK_TCK)" \
    '{ if (n > 0) printf "%.1f %.1f", ($2 - $1) / hz * 1e6 / n, ($4 - $3) / hz * 1e6 / n; else print "0 0" }')"
prof_stop max
MAX_RATE=$(jget obs_per_s "$MAX")
CPU=$(paste <(echo "$cpu0") <(echo "$cpu1") | awk -v s="$(jget seconds "$MAX")" -v hz="$(getconf CLK_TCK)" \
    '{ printf "%s%.0f", (NR > 1 ? " " : ""), (s > 0 ? ($2 - $1) / hz / s * 100 : 0) }')
read -r CPU_COL CPU_BRK CPU_SCR <<<"$CPU"

# ---- 2b. the same in the order a statistics system exports (unit by unit, indicators in order) --
prof_start source
say "end to end, rate 0, source order: $OBS observations in batches of $BATCH"
w0=$(wal_lsn)
MAXS=$(loadgen bench-src --order source --obs "$OBS" --batch "$BATCH" --window "$WINDOW") ||
    { say "kp_loadgen: $MAXS"; exit 1; }
MAXS_WAL=$(wal_per_obs "$w0" "$(wal_lsn)" "$(jget acked_obs "$MAXS")")
prof_stop source
MAXS_RATE=$(jget obs_per_s "$MAXS")

# ---- 2c. the limit twice more; the ratios to the median of the three --------------------------
# A single COPY's rate varied by as much as 40% from one to the next (docs/BENCHMARKS.md
# round 23), more than the runs of step 2 did. Measured after them, not between: the CHECKPOINT
# before a COPY would make the second run start with a checkpoint's page images.
say "COPY limit twice more, after the maximum runs"
read -r COPY2_RATE COPY2_S _ <<<"$(copy_limit)"
[ -n "$COPY2_S" ] || exit 1
read -r COPY3_RATE COPY3_S _ <<<"$(copy_limit)"
[ -n "$COPY3_S" ] || exit 1
rm -rf -- "$work/copy"
read -r COPY_RATE COPY_S <<<"$(printf '%s %s\n' "$COPY1_RATE" "$COPY1_S" "$COPY2_RATE" "$COPY2_S" \
    "$COPY3_RATE" "$COPY3_S" | sort -n | sed -n 2p)"
RATIO=$(awk -v a="$MAX_RATE" -v b="$COPY_RATE" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
RATIO_S=$(awk -v a="$MAXS_RATE" -v b="$COPY_RATE" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')

# ---- 3. latency at fixed rates ---------------------------------------------------------------
say "latency at 1,000 obs/s for ${RATE_SECONDS}s, batches of $RATE_BATCH"
R1K=$(loadgen bench-1k --rate 1000 --seconds "$RATE_SECONDS" --batch "$RATE_BATCH" --window "$WINDOW") ||
    { say "kp_loadgen: $R1K"; exit 1; }
# The scorer's peak RSS at this load alone (issue 9: "at that load"): its high-water mark so
# far is kept, then reset to what it holds now (proc(5) clear_refs) and read after both runs at
# 10,000 obs/s.
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$(cat "$KP_WORK/pids/$1")/status"; }
RSS_SCR_BEFORE=$(hwm scorer)
echo 5 >"/proc/$(cat "$KP_WORK/pids/scorer")/clear_refs"

# ---- 3b. the machine's floor: a durable commit with nothing of kaoping in the way ---------------
# One-row INSERTs, each its own transaction, at 100 per second (pgbench, one connection) for a
# third of --seconds, just before the run at 10,000 obs/s: the commit latency this machine gives
# in this spell. A scorer's group cannot commit faster than this.
FLOOR_S=$((RATE_SECONDS / 3 > 0 ? RATE_SECONDS / 3 : 1))
say "commit floor: one-row INSERT transactions at 100/s for ${FLOOR_S}s (pgbench)"
PGBENCH=$KP_PG_BINDIR/pgbench
[ -x "$PGBENCH" ] || PGBENCH=pgbench
# pgbench_lat NAME TPS: pgbench runs $work/NAME.sql at TPS transactions/s on one connection
# for FLOOR_S seconds and prints "N P50 P99 MAX": the transactions it logged and their latency in
# ms. pgbench logs it in microseconds, third field, from each one's scheduled start; the
# percentiles are kp_loadgen's: the value of rank round(p * (n - 1)).
pgbench_lat() {
    (cd "$work" && "$PGBENCH" -n -R "$2" -T "$FLOOR_S" -f "$1.sql" -l --log-prefix="$1log" \
        "$(kp_pg_dsn "$work/pg")" >"$1.out" 2>&1) ||
        { say "pgbench failed"; cat "$work/$1.out" >&2; return 1; }
    cat "$work/$1log".* | awk '{ print $3 / 1000 }' | sort -g | awk '
        { v[NR - 1] = $1 }
        END { printf "%d %.2f %.2f %.2f", NR, v[int(0.5 * (NR - 1) + 0.5)], v[int(0.99 * (NR - 1) + 0.5)], v[NR - 1] }'
    rm -f -- "$work/$1log".* "$work/$1.sql" "$work/$1.out"
}
psql_q "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, v text NOT NULL)" >/dev/null
echo "INSERT INTO bench_floor (v) VALUES (repeat('x', 100));" >"$work/floor.sql"
FLOOR=$(pgbench_lat floor 100)
read -r FLOOR_N FLOOR_P50 FLOOR_P99 FLOOR_MAX <<<"$FLOOR"
[ "${FLOOR_N:-0}" -gt 0 ] || { say "pgbench logged no transaction"; exit 1; }
psql_q "DROP TABLE bench_floor" >/dev/null

# ---- 3c. PostgreSQL alone at 10,000 obs/s: the observations' rows, nothing else -----------------
# pgbench inserts batches of --rate-batch observations of kp_loadgen's shape (one month each, a
# quarter events, random cells) into `observation`, one transaction per batch at the batches'
# rate, on one connection as the scorer has, for a third of --seconds. What the pipeline adds on
# top (score rows, the wire, acks) is the difference. The rows stay (adapter bench-alone), and
# are counted.
ALONE_TPS=$((10000 / RATE_BATCH > 0 ? 10000 / RATE_BATCH : 1))
say "PostgreSQL alone: batches of $RATE_BATCH observations at $ALONE_TPS/s for ${FLOOR_S}s (pgbench)"
psql_q "CREATE SEQUENCE bench_alone_tx; CREATE SEQUENCE bench_alone_rev" >/dev/null
cat >"$work/alone.sql" <<ALONE_SQL
\\set m random(1, 12)
INSERT INTO observation (scheme, src, ref, rev, unit, indicator, period, value, w, observed_at, adapter, seq)
SELECT 'bench-alone', 'bench',
       CASE WHEN ev THEN 'bench-alone-e' || t.n || '-' || g ELSE 'bench-alone-' || u || '-' || ind || '-' || p END,
       CASE WHEN ev THEN 0 ELSE 1764000000000000000 + nextval('bench_alone_rev') END,
       u, ind, p, CASE WHEN ev THEN (r2 < 0.9)::int ELSE floor(r2 * 1000) / 10 END, 1, now(), 'bench-alone', t.n
FROM (SELECT nextval('bench_alone_tx') AS n, '2015-' || lpad(:m::text, 2, '0') AS p) t,
     LATERAL (SELECT g, 'U' || lpad(floor(random() * 70)::int::text, 3, '0') AS u, random() < 0.25 AS ev,
                     random() AS r, random() AS r2 FROM generate_series(1, $RATE_BATCH) g) x,
     LATERAL (SELECT CASE WHEN ev THEN 'E' || lpad(floor(r * 60)::int::text, 3, '0')
                          ELSE 'V' || lpad(floor(r * 240)::int::text, 3, '0') END AS ind) y;
ALONE_SQL
w0=$(wal_lsn)
ALONE=$(pgbench_lat alone "$ALONE_TPS")
read -r ALONE_N ALONE_P50 ALONE_P99 ALONE_MAX <<<"$ALONE"
[ "${ALONE_N:-0}" -gt 0 ] || { say "pgbench logged no transaction"; exit 1; }
ALONE_ROWS=$(psql_q "SELECT count(*) FROM observation WHERE adapter = 'bench-alone'")
ALONE_WAL=$(wal_per_obs "$w0" "$(wal_lsn)" "$ALONE_ROWS")
ALONE_RATE=$(fdiv "$ALONE_ROWS" "$FLOOR_S")

# The serial part of the path at this load: the scorer and its database session (SESSION, step
# 2) take turns on each group.
say "latency at 10,000 obs/s for ${RATE_SECONDS}s, batches of $RATE_BATCH"
chain0="$(ticks "$(cat "$KP_WORK/pids/scorer")") $(ticks "$SESSION")"
mach0=$(cpuline)
w0=$(wal_lsn)
prof_start 10k
R10K=$(loadgen bench-10k --rate 10000 --seconds "$RATE_SECONDS" --batch "$RATE_BATCH" --window "$WINDOW" \
    --trace "$work/trace-bench-10k.txt") ||
    { say "kp_loadgen: $R10K"; exit 1; }
R10K_WAL=$(wal_per_obs "$w0" "$(wal_lsn)" "$(jget acked_obs "$R10K")")
chain1="$(ticks "$(cat "$KP_WORK/pids/scorer")") $(ticks "$SESSION")"
read -r MACH_IOWAIT MACH_STEAL <<<"$(machine_pct "$mach0")"
prof_stop 10k
read -r CPU10K_SCR CPU10K_SES <<<"$(echo "$chain0 $chain1" | awk -v s="$(jget seconds "$R10K")" -v hz="$(getconf CLK_TCK)" \
    '{ if (s > 0) printf "%.0f %.0f", ($3 - $1) / hz / s * 100, ($4 - $2) / hz / s * 100; else print "0 0" }')"
w0=$(wal_lsn)
say "latency at 10,000 obs/s for ${RATE_SECONDS}s, batches of $RATE_BATCH, source order"
R10KS=$(loadgen bench-10ks --order source --rate 10000 --seconds "$RATE_SECONDS" --batch "$RATE_BATCH" --window "$WINDOW" \
    --trace "$work/trace-bench-10ks.txt") ||
    { say "kp_loadgen: $R10KS"; exit 1; }
R10KS_WAL=$(wal_per_obs "$w0" "$(wal_lsn)" "$(jget acked_obs "$R10KS")")
RSS_SCR_10K=$(hwm scorer)
read -r SLOW_N SLOW_SPELLS SLOW_END SLOW_START SLOW_VAC SLOW_TEXT <<<"$(slow_spells "$work/pg/log" "$work/trace-bench-10k.txt" "$(jget t0_unix_ms "$R10K")")"
read -r SLOWS_N SLOWS_SPELLS SLOWS_END SLOWS_START SLOWS_VAC SLOWS_TEXT <<<"$(slow_spells "$work/pg/log" "$work/trace-bench-10ks.txt" "$(jget t0_unix_ms "$R10KS")")"
for n in "$SLOW_N" "$SLOWS_N"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { say "slow_spells gave no count: '$SLOW_N', '$SLOWS_N'"; exit 1; }
done

# ---- 4. the engine alone ----------------------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
    ENG=$("$ENGINE" --smoke | grep '^{"bench":"engine"')
else
    ENG=$("$ENGINE" --obs 300000 --only source --hot-value 10 --hot-events 10 | grep '^{"bench":"engine"')
fi
ENG_RATE=$(jget obs_per_s "$ENG")

# ---- 5. peak RSS -------------------------------------------------------------------------------
RSS_COL=$(hwm collector)
RSS_BRK=$(hwm broker)
RSS_SCR=$(hwm scorer) # since the reset above: the greater of the two is the run's peak
[ "$RSS_SCR" -ge "$RSS_SCR_BEFORE" ] || RSS_SCR=$RSS_SCR_BEFORE
RSS_SCR_NOW=$(awk '/^VmRSS:/ { print $2 }' "/proc/$(cat "$KP_WORK/pids/scorer")/status")
# What of the scorer's memory is the scheme's state (it grows with the data held): its gauges.
scr_metric() {
    curl -fsS "http://$(kp_cluster_admin scorer)/metrics" |
        awk -v m="$1{scheme=\"bench-e2e\"}" '$1 == m { printf "%.0f", $2 }'
}
STATE_KB=$(scr_metric kaoping_scorer_state_bytes | awk '{ printf "%.0f", $1 / 1024 }')
RECORDS=$(scr_metric kaoping_scorer_records)

# ---- correctness: every batch acked, the table holds exactly what was acked ----------------------
fail=0
if [ "$ALONE_ROWS" != $((ALONE_N * RATE_BATCH)) ]; then
    say "MISMATCH bench-alone: $ALONE_N transactions of $RATE_BATCH, rows $ALONE_ROWS"
    fail=1
fi
for pair in "bench-max:$MAX" "bench-src:$MAXS" "bench-1k:$R1K" "bench-10k:$R10K" "bench-10ks:$R10KS"; do
    aid=${pair%%:*} j=${pair#*:}
    sent=$(jget obs "$j") acked=$(jget acked_obs "$j") stored=$(jget stored "$j")
    rej=$(jget rejected "$j") perm=$(jget nacks_permanent "$j")
    rows=$(psql_q "SELECT count(*) FROM kp_observation WHERE adapter = '$aid'")
    if [ "$acked" != "$sent" ] || [ "$stored" != "$acked" ] || [ "$rej" != 0 ] || [ "$perm" != 0 ] ||
        [ "$rows" != "$acked" ]; then
        say "MISMATCH $aid: sent $sent, acked $acked, stored $stored, rejected $rej, permanent nacks $perm, rows $rows"
        fail=1
    fi
done
if ! [ "${STATE_KB:-0}" -gt 0 ] 2>/dev/null || ! [ "${RECORDS:-0}" -gt 0 ] 2>/dev/null; then
    say "the scorer's state gauges are missing: state ${STATE_KB:-?} kB, records ${RECORDS:-?}"
    fail=1
fi

# ---- report --------------------------------------------------------------------------------------
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
fmt() { # 1234567 -> 1,234,567
    awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); print s }'
}
host_cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo
echo "bench_e2e: $(nproc) CPUs ($host_cpu), CURVE $CURVE, $OBS observations in batches of $BATCH" \
    "(${EVENT_SHARE} events), window $(jget window "$MAX"), fixed rates ${RATE_SECONDS}s in batches of $RATE_BATCH"
echo "PostgreSQL: $PG_SETTINGS; WAL warmed: $WAL_WARM_MB MB"
echo
echo "| measurement | obs/s | p50 ms | p99 ms | max ms | note |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
echo "| COPY, one transaction (the limit: the median of three) | $(fmt "$COPY_RATE") | | | | ${COPY_S} s; WAL ${COPY_WAL} B/obs; before the maximum runs $(fmt "$COPY1_RATE"), after them $(fmt "$COPY2_RATE") and $(fmt "$COPY3_RATE") obs/s |"
echo "| COPY, one transaction per batch of $BATCH | $(fmt "$COPYB_RATE") | | | | ${COPYB_S} s |"
echo "| end to end, rate 0 (maximum), random cells | $(fmt "$MAX_RATE") | $(jget p50_ms "$MAX") | $(jget p99_ms "$MAX") | $(jget max_ms "$MAX") | ${RATIO} of COPY; WAL ${MAX_WAL} B/obs; $(jget retries "$MAX") resends after nacks; CPU collector ${CPU_COL}%, broker ${CPU_BRK}%, scorer ${CPU_SCR}%; CPU ms per 1,000 obs: scorer ${MAXC_SCR}, its database session ${MAXC_SES}; machine: iowait ${MAX_IOWAIT}%, steal ${MAX_STEAL}% |"
echo "| end to end, rate 0, source order | $(fmt "$MAXS_RATE") | $(jget p50_ms "$MAXS") | $(jget p99_ms "$MAXS") | $(jget max_ms "$MAXS") | ${RATIO_S} of COPY; WAL ${MAXS_WAL} B/obs; $(jget retries "$MAXS") resends after nacks |"
due() { echo "from when due: p50 $(jget due_p50_ms "$1"), p99 $(jget due_p99_ms "$1"), max $(jget due_max_ms "$1") ms"; }
echo "| end to end at 1,000 obs/s | $(fmt "$(jget obs_per_s "$R1K")") | $(jget p50_ms "$R1K") | $(jget p99_ms "$R1K") | $(jget max_ms "$R1K") | $(jget acked_batches "$R1K") batches; $(due "$R1K") |"
echo "| end to end at 10,000 obs/s | $(fmt "$(jget obs_per_s "$R10K")") | $(jget p50_ms "$R10K") | $(jget p99_ms "$R10K") | $(jget max_ms "$R10K") | $(jget acked_batches "$R10K") batches; $(due "$R10K"); WAL ${R10K_WAL} B/obs; CPU scorer ${CPU10K_SCR}%, its database session ${CPU10K_SES}%; machine: iowait ${MACH_IOWAIT}%, steal ${MACH_STEAL}% |"
echo "| end to end at 10,000 obs/s, source order | $(fmt "$(jget obs_per_s "$R10KS")") | $(jget p50_ms "$R10KS") | $(jget p99_ms "$R10KS") | $(jget max_ms "$R10KS") | $(jget acked_batches "$R10KS") batches; $(due "$R10KS"); WAL ${R10KS_WAL} B/obs |"
echo "| commit floor: one-row INSERT transactions at 100/s (pgbench) | | $FLOOR_P50 | $FLOOR_P99 | $FLOOR_MAX | $FLOOR_N transactions in ${FLOOR_S} s, just before the run at 10,000 obs/s |"
echo "| PostgreSQL alone: the observations' rows at 10,000 obs/s (pgbench, a batch of $RATE_BATCH per transaction) | $(fmt "$ALONE_RATE") | $ALONE_P50 | $ALONE_P99 | $ALONE_MAX | $ALONE_N transactions in ${FLOOR_S} s, latency from when due; WAL ${ALONE_WAL} B/obs |"
echo "| scoring engine alone (bench_engine) | $(fmt "$ENG_RATE") | | | | one core, no I/O |"
echo "| peak RSS (VmHWM) | | | | | collector $(mb "$RSS_COL") MiB, broker $(mb "$RSS_BRK") MiB, scorer $(mb "$RSS_SCR") MiB (at 10,000 obs/s $(mb "$RSS_SCR_10K") MiB; at the end $(mb "$RSS_SCR_NOW") MiB, of which the scheme's state $(mb "$STATE_KB") MiB: $(fmt "$RECORDS") records) |"
echo
echo "Slow spells at 10,000 obs/s: $SLOW_N batches over 50 ms from when due; spells: $SLOW_SPELLS; their batches as a checkpoint ended: $SLOW_END, after one started: $SLOW_START, during autovacuum: $SLOW_VAC. By second of the run (batches, slowest): $SLOW_TEXT."
echo
echo "The same in source order: $SLOWS_N batches; spells: $SLOWS_SPELLS; as a checkpoint ended: $SLOWS_END, after one started: $SLOWS_START, during autovacuum: $SLOWS_VAC. By second: $SLOWS_TEXT."
echo
echo "{\"bench\":\"e2e\",\"curve\":$CURVE,\"obs\":$OBS,\"batch\":$BATCH,\"window\":$(jget window "$MAX"),\"copy_obs_per_s\":$COPY_RATE,\"copy_runs_obs_per_s\":[$COPY1_RATE,$COPY2_RATE,$COPY3_RATE],\"copy_batch_obs_per_s\":$COPYB_RATE,\"e2e_obs_per_s\":$MAX_RATE,\"e2e_vs_copy\":$RATIO,\"e2e_source_obs_per_s\":$MAXS_RATE,\"e2e_source_vs_copy\":$RATIO_S,\"e2e_p50_ms\":$(jget p50_ms "$MAX"),\"e2e_p99_ms\":$(jget p99_ms "$MAX"),\"wal_b_per_obs\":{\"copy\":$COPY_WAL,\"max\":$MAX_WAL,\"source\":$MAXS_WAL,\"r10k\":$R10K_WAL,\"r10k_source\":$R10KS_WAL},\"rate_batch\":$RATE_BATCH,\"p50_1k_ms\":$(jget p50_ms "$R1K"),\"p99_1k_ms\":$(jget p99_ms "$R1K"),\"max_1k_ms\":$(jget max_ms "$R1K"),\"p50_10k_ms\":$(jget p50_ms "$R10K"),\"p99_10k_ms\":$(jget p99_ms "$R10K"),\"max_10k_ms\":$(jget max_ms "$R10K"),\"due_p99_10k_ms\":$(jget due_p99_ms "$R10K"),\"due_p99_10k_source_ms\":$(jget due_p99_ms "$R10KS"),\"alone_p50_ms\":$ALONE_P50,\"alone_p99_ms\":$ALONE_P99,\"alone_max_ms\":$ALONE_MAX,\"alone_wal_b_per_obs\":$ALONE_WAL,\"machine_10k_pct\":{\"iowait\":$MACH_IOWAIT,\"steal\":$MACH_STEAL},\"slow_10k\":{\"batches\":$SLOW_N,\"spells\":$SLOW_SPELLS,\"at_ckpt_end\":$SLOW_END,\"after_ckpt_start\":$SLOW_START,\"during_autovacuum\":$SLOW_VAC},\"slow_10k_source\":{\"batches\":$SLOWS_N,\"spells\":$SLOWS_SPELLS,\"at_ckpt_end\":$SLOWS_END,\"after_ckpt_start\":$SLOWS_START,\"during_autovacuum\":$SLOWS_VAC},\"obs_per_s_10k\":$(jget obs_per_s "$R10K"),\"cpu_pct_10k\":{\"scorer\":$CPU10K_SCR,\"session\":$CPU10K_SES},\"floor_p50_ms\":$FLOOR_P50,\"floor_p99_ms\":$FLOOR_P99,\"floor_max_ms\":$FLOOR_MAX,\"p50_10k_source_ms\":$(jget p50_ms "$R10KS"),\"p99_10k_source_ms\":$(jget p99_ms "$R10KS"),\"obs_per_s_10k_source\":$(jget obs_per_s "$R10KS"),\"engine_obs_per_s\":$ENG_RATE,\"pg\":\"$PG_SETTINGS\",\"wal_warm_mb\":$WAL_WARM_MB,\"rss_kb\":{\"collector\":$RSS_COL,\"broker\":$RSS_BRK,\"scorer\":$RSS_SCR,\"scorer_10k\":$RSS_SCR_10K,\"scorer_now\":$RSS_SCR_NOW,\"scorer_state\":${STATE_KB:-0}},\"scorer_records\":${RECORDS:-0},\"cpu_pct\":{\"collector\":$CPU_COL,\"broker\":$CPU_BRK,\"scorer\":$CPU_SCR},\"cpu_ms_per_kobs_max\":{\"scorer\":$MAXC_SCR,\"session\":$MAXC_SES},\"machine_max_pct\":{\"iowait\":$MAX_IOWAIT,\"steal\":$MAX_STEAL},\"ok\":$([ $fail = 0 ] && echo true || echo false)}"
[ -n "$PROFILE" ] && say "profiles in $PROFILE"
exit $fail
