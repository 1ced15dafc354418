# shellcheck shell=bash
#
# cluster.sh: a local kaoping cluster for the integration tests and the main job
# (deploy/run-local.sh). Source it after pg.sh; it defines functions only.
#
#   kp_cluster_init WORK BUILD_DIR SOURCE_DIR SCHEME_FILE DSN
#       allocate ports and write WORK/etc/{broker,collector,scorer}.yaml for one scheme;
#       logs go to WORK/logs, spools to WORK/spool, pids to WORK/pids
#   kp_cluster_adapter NAME SRC SOURCE_DSN QUERY_FILE [EXTRA_YAML]
#       write WORK/etc/adapter-NAME.yaml: an sql-source adapter with aid NAME
#   kp_cluster_start NAME       start broker | collector | scorer | adapter-NAME (background)
#   kp_cluster_kill NAME [SIG]  signal it (default KILL) and wait for it to exit
#   kp_cluster_alive NAME       true while it runs
#   kp_cluster_stop_all         SIGTERM everything started, wait
#   kp_wait_sql DSN SQL WANT [SECONDS]
#       poll until `psql -tA -c SQL` prints WANT (default 60 s); on timeout print what it
#       printed last and return 1
#
# Variables set by kp_cluster_init: KP_WORK, KP_BIN, KP_SRC, KP_SCHEME_FILE, KP_SCHEME,
# KP_DSN, KP_COL_PORT, KP_BRK_FRONT, KP_BRK_BACK.

kp_cluster_init() {
    KP_WORK=$1
    KP_BIN=$2
    KP_SRC=$3
    KP_SCHEME_FILE=$4
    KP_DSN=$5
    KP_SCHEME=$(sed -n 's/^scheme: *//p' "$KP_SCHEME_FILE" | head -n 1)
    mkdir -p "$KP_WORK/etc" "$KP_WORK/logs" "$KP_WORK/spool" "$KP_WORK/pids"
    KP_COL_PORT=$(kp_pg_free_port)
    KP_BRK_FRONT=$(kp_pg_free_port)
    KP_BRK_BACK=$(kp_pg_free_port)
    cat >"$KP_WORK/etc/broker.yaml" <<YAML
instance: local
frontend: tcp://127.0.0.1:$KP_BRK_FRONT
backend: tcp://127.0.0.1:$KP_BRK_BACK
admin: 127.0.0.1:0
YAML
    cat >"$KP_WORK/etc/collector.yaml" <<YAML
instance: local
listen: tcp://127.0.0.1:$KP_COL_PORT
broker: tcp://127.0.0.1:$KP_BRK_FRONT
admin: 127.0.0.1:0
YAML
    cat >"$KP_WORK/etc/scorer.yaml" <<YAML
instance: $KP_SCHEME
broker: tcp://127.0.0.1:$KP_BRK_BACK
db:
  dsn: "$KP_DSN"
schemes:
  - $KP_SCHEME_FILE
migrations: $KP_SRC/schemas/migrations
admin: 127.0.0.1:0
YAML
}

kp_cluster_adapter() {
    local name=$1 src=$2 sdsn=$3 qfile=$4 extra=${5:-}
    local query
    query=$(sed 's/\\/\\\\/g; s/"/\\"/g' "$qfile" | tr '\n' ' ')
    {
        cat <<YAML
instance: $name
aid: $name
scheme: $KP_SCHEME
src: $src
collector: tcp://127.0.0.1:$KP_COL_PORT
spool: $KP_WORK/spool/$name.db
admin: 127.0.0.1:0
source:
  driver: sql
  dsn: "$sdsn"
  query: "$query"
  poll_ms: 200
  lag_ms: 500
YAML
        if [ -n "$extra" ]; then printf "%s\n" "$extra"; fi
    } >"$KP_WORK/etc/adapter-$name.yaml"
}

kp_cluster_start() {
    local name=$1 bin args=()
    case $name in
    broker) bin=$KP_BIN/broker/kp-broker ;;
    collector) bin=$KP_BIN/collector/kp-collector; args=(--insecure) ;;
    scorer) bin=$KP_BIN/scorer/kp-scorer ;;
    adapter-*) bin=$KP_BIN/adapters/kp-adapter ;;
    *) echo "kp_cluster_start: unknown daemon $name" >&2; return 1 ;;
    esac
    "$bin" -c "$KP_WORK/etc/$name.yaml" "${args[@]}" >>"$KP_WORK/logs/$name.log" 2>&1 &
    echo $! >"$KP_WORK/pids/$name"
}

kp_cluster_alive() {
    local pid
    pid=$(cat "$KP_WORK/pids/$1" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null
}

kp_cluster_kill() {
    local name=$1 sig=${2:-KILL} pid
    pid=$(cat "$KP_WORK/pids/$name" 2>/dev/null) || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
    rm -f "$KP_WORK/pids/$name"
}

kp_cluster_stop_all() {
    local f
    for f in "$KP_WORK"/pids/*; do
        [ -e "$f" ] || continue
        kp_cluster_kill "$(basename "$f")" TERM
    done
}

kp_wait_sql() {
    local dsn=$1 sql=$2 want=$3 secs=${4:-60} got="" i
    for i in $(seq 1 $((secs * 5))); do
        got=$(psql -X -tA -v ON_ERROR_STOP=1 "$dsn" -c "$sql" 2>/dev/null) || got="(psql failed)"
        [ "$got" = "$want" ] && return 0
        sleep 0.2
    done
    echo "kp_wait_sql: timeout after ${secs}s: $sql" >&2
    echo "  want: $want" >&2
    echo "  got:  $got" >&2
    return 1
}
