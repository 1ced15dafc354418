# slow_spells.sh: sourced by bench_e2e.sh (and tests/bench/test_slow_spells.sh).
#
#   slow_spells PG_LOG TRACE T0_UNIX_MS
#
# The slow spells of a fixed-rate run and the checkpoints around them (docs/BENCHMARKS.md round
# 22). TRACE is kp_loadgen's --trace (seq, send ms after the start, latency ms, observations,
# sends, latency from when due ms), T0_UNIX_MS its JSON's t0_unix_ms, PG_LOG the server's log
# with its times in UTC, log_checkpoints on and autovacuum's longer runs logged
# (log_autovacuum_min_duration). The batches that waited more than 50 ms from when due form
# spells (each from its first batch's due time to its last ack; a batch due more than a second
# after the last ack begins a new one). A spell is put down to a checkpoint that completed while
# it lasted or within 0.2 s after (its sync phase: commits wait behind the data files' fsync),
# else to one that started in the 5 s before it or while it lasted (the first change of each
# page after a start writes the whole page to the WAL), else to an autovacuum or autoanalyze
# that ran while it lasted (from the logged end less its elapsed time, to 0.2 s after). Prints
# one line: slow batches, spells, batches in spells at a checkpoint's end, after a checkpoint's
# start, during autovacuum, and the spells in words ("none" when there is none).
slow_spells() {
    TZ=UTC awk -v logf="$1" -v t0="$3" -v lim=50 '
        function cause(a, b,    i) {
            for (i = 1; i <= ne; i++) if (isend[i] && at[i] >= a && at[i] <= b + 200) return "e"
            for (i = 1; i <= ne; i++) if (!isend[i] && at[i] >= a - 5000 && at[i] <= b) return "s"
            for (i = 1; i <= nv; i++) if (v1[i] >= a && v0[i] <= b + 200) { vwhat = vname[i]; return "v" }
            return ""
        }
        function close_spell(    c) {
            if (!nb) return
            c = cause(sa, sb)
            spells++
            if (c == "e") nend += nb
            else if (c == "s") nstart += nb
            else if (c == "v") nvac += nb
            text = text sprintf("%s%.1f s: %d, up to %.0f ms%s", spells > 1 ? "; " : "", sa / 1000, nb, mx,
                c == "e" ? ", as a checkpoint ended" : c == "s" ? ", after a checkpoint started" : \
                c == "v" ? ", during " vwhat : "")
            nb = 0
        }
        function ms(    d, t) {
            split($1, d, "-")
            split($2, t, ":")
            return (mktime(d[1] " " d[2] " " d[3] " " t[1] " " t[2] " " int(t[3])) + t[3] - int(t[3])) * 1000 - t0
        }
        FILENAME == logf && $3 == "UTC" && $0 ~ /LOG: +checkpoint (starting|complete)/ {
            ne++
            at[ne] = ms()
            isend[ne] = $0 ~ /checkpoint complete/
            next
        }
        FILENAME == logf && $3 == "UTC" && $0 ~ /LOG: +automatic (vacuum|analyze) of table "/ {
            vat = ms()
            split($0, q, "\"")
            sub(/^[^.]*\.[^.]*\./, "", q[2]) # database.schema.
            vn = ($0 ~ /automatic analyze/ ? "autoanalyze of " : "autovacuum of ") q[2]
            next
        }
        FILENAME == logf && vn != "" && match($0, /elapsed: [0-9.]+ s/) {
            nv++
            v1[nv] = vat
            v0[nv] = vat - substr($0, RSTART + 9, RLENGTH - 11) * 1000
            vname[nv] = vn
            vn = ""
            next
        }
        FILENAME == logf { next }
        NF >= 6 && $6 > lim {
            ack = $2 + $3
            from = ack - $6
            slow++
            if (nb && from > sb + 1000) close_spell()
            if (!nb) { sa = from; sb = ack; mx = 0 }
            if (ack > sb) sb = ack
            if ($6 > mx) mx = $6
            nb++
        }
        END {
            close_spell()
            printf "%d %d %d %d %d %s\n", slow, spells, nend, nstart, nvac, text == "" ? "none" : text
        }
    ' "$1" "$2"
}
