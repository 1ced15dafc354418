#!/usr/bin/env bash
# test_slow_spells.sh: slow_spells (tests/bench/slow_spells.sh) on a made-up server log and
# kp_loadgen trace whose spells and checkpoints are known (CTest bench.slow_spells).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/slow_spells.sh"
dir=$(mktemp -d /tmp/kp-slow-spells.XXXXXX)
trap 'rm -rf -- "$dir"' EXIT

t0=$(($(date -u -d '2026-12-06 10:00:00' +%s) * 1000)) # the run's start
# A checkpoint starts at 5.000 s and completes at 20.100 s; an autoanalyze of observation runs
# from 12.300 to 14.600 s (logged at its end with its elapsed time), one of unit_scores from
# 6.000 to 6.010 s. A line in another zone and the other LOG lines are neither.
cat >"$dir/log" <<'EOF'
2026-12-06 10:00:01.000 UTC [10] LOG:  database system is ready to accept connections
2026-12-06 10:00:05.000 UTC [11] LOG:  checkpoint starting: wal
2026-12-06 10:00:06.010 UTC [12] LOG:  automatic analyze of table "kaoping.public.unit_scores"
	avg read rate: 0.000 MB/s, avg write rate: 0.000 MB/s
	system usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 0.01 s
2026-12-06 10:00:12.000 CET [11] LOG:  checkpoint complete: wrote 1 buffers (0.0%)
2026-12-06 10:00:14.600 UTC [13] LOG:  automatic analyze of table "kaoping.public.observation"
	avg read rate: 196.031 MB/s, avg write rate: 6.845 MB/s
	buffer usage: 1442 hits, 29182 misses, 1019 dirtied
	system usage: CPU: user: 0.24 s, system: 0.06 s, elapsed: 2.30 s
2026-12-06 10:00:20.100 UTC [11] LOG:  checkpoint complete: wrote 9 buffers (0.1%); write=14.9 s
EOF
# seq, send ms, latency ms, obs, sends, latency from when due ms
cat >"$dir/trace" <<'EOF'
1 1000.000 10.000 100 1 10.000
2 5990.000 60.000 100 1 70.000
3 6000.000 55.000 100 1 75.000
4 6010.000 45.000 100 1 49.000
5 12000.000 80.000 100 1 80.000
6 13500.000 90.000 100 1 90.000
7 19900.000 150.000 100 1 150.000
8 19910.000 140.000 100 1 140.000
9 30000.000 10.000 100 1 10.000
EOF
# Batches over 50 ms from when due: 2, 3 (due 5.980 s, ack 6.055 s: 0.98 s after the start:
# "after a checkpoint started", which comes before the analyze of unit_scores), 5 (12.000-12.080
# s, nothing near: the analyze of observation begins 0.22 s after its last ack, beyond 0.2 s),
# 6 (due 13.500 s, more than a second after 12.080: a spell of its own, during the analyze of
# observation), 7 and 8 (due 19.900 s, acks 20.050: the checkpoint completes 0.05 s later,
# within 0.2 s: "as a checkpoint ended"). Batch 4 waited 49 ms.
want="6 4 2 2 1 6.0 s: 2, up to 75 ms, after a checkpoint started; 12.0 s: 1, up to 80 ms; 13.5 s: 1, up to 90 ms, during autoanalyze of observation; 19.9 s: 2, up to 150 ms, as a checkpoint ended"
got=$(slow_spells "$dir/log" "$dir/trace" "$t0")
if [ "$got" != "$want" ]; then
    printf 'slow_spells:\n  got:  %s\n  want: %s\n' "$got" "$want" >&2
    exit 1
fi
# An empty log: no cause; no slow batch: none.
: >"$dir/empty"
got=$(slow_spells "$dir/empty" "$dir/trace" "$((t0 + 60000))")
want="6 4 0 0 0 6.0 s: 2, up to 75 ms; 12.0 s: 1, up to 80 ms; 13.5 s: 1, up to 90 ms; 19.9 s: 2, up to 150 ms"
[ "$got" = "$want" ] || { printf 'empty log: got %s\n' "$got" >&2; exit 1; }
printf '1 1000.000 10.000 100 1 10.000\n' >"$dir/fast"
got=$(slow_spells "$dir/log" "$dir/fast" "$t0")
[ "$got" = "0 0 0 0 0 none" ] || { printf 'no slow batch: got %s\n' "$got" >&2; exit 1; }
echo "test_slow_spells: ok"
