# shellcheck shell=bash
#
# pg.sh: a throwaway PostgreSQL for tests, the local cluster (deploy/) and fault scenarios.
# Source it (`. tests/harness/pg.sh`); it defines functions only and changes no shell options.
#
# A cluster lives entirely in one directory DIR:
#   DIR/data      the data directory (initdb)        DIR/log    the server log
#   DIR/port      the TCP port it was started on     DIR/.s.PGSQL.<port>  its unix socket
# It listens on 127.0.0.1:<port> and on the unix socket in DIR, trusts every local
# connection (--auth=trust), superuser `postgres`, database `kaoping` (created on first
# start), UTF8, locale C.UTF-8 (C when that locale is missing). fsync and synchronous_commit
# stay ON: the scorer acks only durable commits (ARCHITECTURE.md guarantee 1).
# PostgreSQL refuses to run as root: under uid 0 DIR is chowned to `postgres` and the server
# tools run through `runuser -u postgres --`.
#
# Functions
#   kp_pg_free_port                print a TCP port of 127.0.0.1 that nothing listens on
#   kp_pg_start DIR PORT           initdb DIR when it holds no cluster yet, then start it on
#                                  PORT and wait until it accepts connections; a stopped or
#                                  killed cluster is restarted with its data (fault tests).
#                                  Returns non-zero (with the server log on stderr) on failure.
#   kp_pg_stop DIR                 fast shutdown (waits); falls back to immediate, then SIGKILL
#   kp_pg_kill DIR                 immediate shutdown: a crash as PostgreSQL sees it (no
#                                  checkpoint; recovery on the next start)
#   kp_pg_running DIR              true when the cluster of DIR is up
#   kp_pg_dsn DIR [DBNAME]         print a libpq DSN for DIR over TCP (DBNAME: kaoping)
#   kp_pg_psql DIR [psql args...]  run psql on DIR's kaoping database (-X -q -v ON_ERROR_STOP=1)
#   kp_pg_createdb DIR NAME        create another database in the cluster
#   kp_pg_new_dir                  print a fresh temp dir suitable as DIR (mktemp, mode 0700)
#   kp_pg_destroy DIR              stop the cluster if running and remove DIR
#
# Environment
#   KP_PG_BINDIR   PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#   KP_PG_USER     OS user that runs the server when we are root (default postgres)
#   KP_PG_TMPDIR   parent of kp_pg_new_dir's directories (default ${TMPDIR:-/tmp}); keep it
#                  short: unix socket paths are limited to ~100 bytes
# tests/harness/with-pg.sh sets, for the command it runs:
#   KP_TEST_DSN    DSN of the kaoping database of its throwaway cluster
#   KP_PG_DIR      the cluster directory (use kp_pg_stop/kp_pg_start/kp_pg_kill on it)
#   KP_PG_PORT     its port
#   KP_PG_KEEP=1   (input) keep the directory after the run, for post-mortems

KP_PG_BINDIR=${KP_PG_BINDIR:-/usr/lib/postgresql/15/bin}
KP_PG_USER=${KP_PG_USER:-postgres}

# Runs a server tool as the cluster's OS user.
kp__pg_as() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$KP_PG_USER" -- "$@"
    else
        "$@"
    fi
}

kp__pg_locale() {
    if locale -a 2>/dev/null | grep -qi '^c\.utf-\?8$'; then
        echo C.UTF-8
    else
        echo C
    fi
}

kp_pg_new_dir() {
    mktemp -d "${KP_PG_TMPDIR:-${TMPDIR:-/tmp}}/kp-pg.XXXXXX"
}

# A TCP port nothing listens on now. With KP_PORTS_FILE set (the cluster harness sets it to
# WORK/admin-ports), the ports handed out are remembered there and never given twice: they are
# bound only later, so "free now" alone let two daemons of one test draw the same one (the
# broker and Alertmanager once did).
kp_pg_free_port() {
    local i port lo=20000 hi=60000 range given=${KP_PORTS_FILE:-}
    # Stay below the kernel's ephemeral range: a port handed out there may become the local
    # port of some outgoing connection before the daemon binds it (EADDRINUSE).
    range=$(cat /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || range=""
    if [ -n "$range" ] && [ "${range%%[[:space:]]*}" -gt $((lo + 1000)) ]; then
        hi=${range%%[[:space:]]*}
    fi
    for i in $(seq 1 200); do
        port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
        if [ -n "$given" ] && grep -qx "$port" "$given" 2>/dev/null; then
            continue
        fi
        # Something answers on it: taken.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            continue
        fi
        # A listener that refuses us (or a socket being set up) still shows in ss.
        if command -v ss >/dev/null 2>&1 && ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
            continue
        fi
        [ -z "$given" ] || { echo "$port" >>"$given"; } 2>/dev/null || true
        echo "$port"
        return 0
    done
    echo "kp_pg_free_port: no free port found" >&2
    return 1
}

kp_pg_running() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] && kp__pg_as "$KP_PG_BINDIR/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

kp_pg_start() {
    local dir=$1 port=$2
    if [ -z "$dir" ] || [ -z "$port" ]; then
        echo "usage: kp_pg_start DIR PORT" >&2
        return 2
    fi
    mkdir -p "$dir" || return 1
    if [ "$(id -u)" -eq 0 ]; then
        chown -R "$KP_PG_USER" "$dir" || return 1
    fi
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        if ! kp__pg_as "$KP_PG_BINDIR/initdb" -D "$dir/data" --auth=trust -U postgres -E UTF8 \
            --locale="$(kp__pg_locale)" --no-instructions >"$dir/initdb.log" 2>&1; then
            echo "kp_pg_start: initdb failed:" >&2
            cat "$dir/initdb.log" >&2
            return 1
        fi
        # Last setting wins in postgresql.conf; port and socket are passed at start.
        cat >>"$dir/data/postgresql.conf" <<EOF
# kaoping test cluster (tests/harness/pg.sh)
listen_addresses = '127.0.0.1'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 100
shared_buffers = 32MB
dynamic_shared_memory_type = posix
logging_collector = off
log_min_messages = warning
log_connections = off
log_disconnections = off
EOF
    fi
    echo "$port" >"$dir/port"
    if [ "$(id -u)" -eq 0 ]; then
        chown "$KP_PG_USER" "$dir/port"
    fi
    # A killed server leaves postmaster.pid behind; pg_ctl copes when the pid is dead.
    if ! kp__pg_as "$KP_PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
        -o "-p $port -k '$dir' -c listen_addresses=127.0.0.1" start >/dev/null 2>&1; then
        echo "kp_pg_start: pg_ctl start failed on port $port; server log:" >&2
        tail -n 30 "$dir/log" >&2 2>/dev/null
        return 1
    fi
    local i
    for i in $(seq 1 100); do
        if kp__pg_as "$KP_PG_BINDIR/pg_isready" -q -h "$dir" -p "$port" -d postgres; then
            break
        fi
        sleep 0.1
    done
    if ! kp__pg_as "$KP_PG_BINDIR/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'kaoping'" | grep -q 1; then
        kp__pg_as "$KP_PG_BINDIR/createdb" -h "$dir" -p "$port" -U postgres kaoping || return 1
    fi
    return 0
}

kp_pg_stop() {
    local dir=$1
    [ -d "$dir/data" ] || return 0
    kp__pg_as "$KP_PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 && return 0
    kp__pg_as "$KP_PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1 && return 0
    # Last resort: the postmaster's pid is the first line of postmaster.pid.
    local pid
    pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null
        sleep 0.5
    fi
    return 0
}

kp_pg_kill() {
    local dir=$1
    kp__pg_as "$KP_PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1
}

kp_pg_dsn() {
    local dir=$1 db=${2:-kaoping}
    local port
    port=$(cat "$dir/port" 2>/dev/null) || {
        echo "kp_pg_dsn: $dir has no cluster" >&2
        return 1
    }
    echo "host=127.0.0.1 port=$port user=postgres dbname=$db connect_timeout=5"
}

kp_pg_psql() {
    local dir=$1
    shift
    local port
    port=$(cat "$dir/port") || return 1
    "$KP_PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d kaoping "$@"
}

kp_pg_createdb() {
    local dir=$1 name=$2
    kp_pg_psql "$dir" -c "CREATE DATABASE \"$name\""
}

kp_pg_destroy() {
    local dir=$1
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    kp_pg_stop "$dir"
    rm -rf -- "$dir"
}
