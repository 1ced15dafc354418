#!/usr/bin/env bash
#
# with-pg.sh COMMAND [ARGS...]: runs COMMAND against a throwaway PostgreSQL 15.
#
# Starts a fresh cluster in a temp directory on a free port of 127.0.0.1 (unix socket in the
# same directory; see pg.sh for the settings), exports
#   KP_TEST_DSN  libpq DSN of its `kaoping` database
#   KP_PG_DIR    the cluster directory (fault tests may kp_pg_stop / kp_pg_start / kp_pg_kill it)
#   KP_PG_PORT   its port
#   KP_PG_BINDIR the server binaries used
# runs COMMAND, then stops the cluster and removes the directory, whatever happens: normal
# exit, failure, SIGINT/SIGTERM/SIGHUP (forwarded to COMMAND first), and even SIGKILL of this
# script (a detached guard notices and cleans up). Exits with COMMAND's status (or 128+signal).
# KP_PG_KEEP=1 keeps the stopped cluster directory and prints its path.
# CTest runs every tests/unit/test_pg_*.c binary through this script.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=pg.sh
. "$here/pg.sh"

if [ $# -eq 0 ]; then
    echo "usage: with-pg.sh COMMAND [ARGS...]" >&2
    exit 2
fi

dir=$(kp_pg_new_dir) || exit 1
child=""
rc=1

cleanup() {
    trap - EXIT INT TERM HUP
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null
        # Give it a moment to close its connections, then insist.
        local i
        for i in $(seq 1 50); do
            kill -0 "$child" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    if [ "${KP_PG_KEEP:-0}" = 1 ]; then
        kp_pg_stop "$dir"
        echo "with-pg.sh: kept $dir (log: $dir/log)" >&2
    else
        kp_pg_destroy "$dir"
    fi
}
trap 'cleanup; exit "$rc"' EXIT
trap 'rc=130; exit 130' INT
trap 'rc=143; exit 143' TERM
trap 'rc=129; exit 129' HUP

# Guard against SIGKILL of this script (a CTest timeout): a detached process, outside our
# process tree and with no inherited pipes, removes the cluster once we are gone.
if command -v setsid >/dev/null 2>&1 && [ "${KP_PG_KEEP:-0}" != 1 ]; then
    setsid -f bash -c '
        . "$1"
        while kill -0 "$2" 2>/dev/null; do sleep 1; done
        kp_pg_destroy "$3"
    ' kp-pg-guard "$here/pg.sh" "$$" "$dir" </dev/null >/dev/null 2>&1
fi

port=""
for attempt in 1 2 3 4 5; do
    port=$(kp_pg_free_port) || exit 1
    if kp_pg_start "$dir" "$port"; then
        break
    fi
    port=""
    echo "with-pg.sh: start attempt $attempt failed; retrying on another port" >&2
done
if [ -z "$port" ]; then
    echo "with-pg.sh: could not start PostgreSQL" >&2
    exit 1
fi

KP_TEST_DSN=$(kp_pg_dsn "$dir")
export KP_TEST_DSN KP_PG_BINDIR
export KP_PG_DIR="$dir" KP_PG_PORT="$port"

if [ -t 0 ]; then
    # Interactive (e.g. with-pg.sh psql): keep the terminal.
    "$@"
    rc=$?
else
    "$@" &
    child=$!
    wait "$child"
    rc=$?
    child=""
fi
exit "$rc"
