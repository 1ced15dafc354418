# shellcheck shell=bash
#
# cluster.sh: a local kaoping cluster for the integration tests and the main job
# (deploy/run-local.sh). Source it after pg.sh; it defines functions only.
#
#   kp_cluster_init WORK BUILD_DIR SOURCE_DIR SCHEME_FILE DSN
#       allocate ports and write WORK/etc/{broker,collector,scorer}.yaml for one scheme;
#       logs go to WORK/logs, spools to WORK/spool, pids to WORK/pids. Every daemon gets a
#       fixed admin port (known before it starts), and WORK/etc/cluster.yaml lists each
#       daemon's name, kind and admin address for `kpctl status --cluster` and Prometheus
#   kp_cluster_adapter NAME SRC SOURCE_DSN QUERY_FILE [EXTRA_YAML]
#       write WORK/etc/adapter-NAME.yaml: an sql-source adapter with aid NAME (and add it to
#       cluster.yaml)
#   kp_cluster_describe NAME KIND ADMIN
#       add a daemon (kind broker|collector|scorer|adapter, ADMIN host:port) to cluster.yaml
#   kp_cluster_admin NAME       print the admin host:port of broker | collector | scorer |
#                               adapter-NAME (from its WORK/etc/NAME.yaml)
#   kp_cluster_prometheus_config OUT [SCRAPE_INTERVAL]
#       write a prometheus.yml scraping every daemon of cluster.yaml (one job per kind,
#       label daemon=NAME) with deploy/prometheus/rules/kaoping.rules.yml
#   kp_cluster_scorer NAME
#       write WORK/etc/scorer-NAME.yaml: another scorer of the same scheme and database (a
#       standby behind the scheme's advisory lock) with its own admin port
#   kp_cluster_adapter_profile NAME PROFILE_FILE [KEY=VALUE | 'key: value' ...]
#       write WORK/etc/adapter-NAME.yaml from a department profile (deploy/profiles/),
#       its @COLLECTOR@ @SCHEME@ @WORK@ and @KEY@ placeholders filled (see the function)
#   kp_cluster_adapter_keys NAME
#       CURVE for WORK/etc/adapter-NAME.yaml (kp_cluster_adapter, kp_cluster_adapter_profile and
#       kp_cluster_start call it): a key pair WORK/keys/adapter-AID.{key,secret} from `kpctl
#       keygen`, the file's curve.* keys, and an entry in the collector's key file granting the
#       aid its scheme and src with every indicator (SIGHUP to a running collector); with
#       KP_INSECURE=1 `insecure: true` instead
#   kp_cluster_metric NAME SERIES
#       print one series' value from NAME's /metrics (e.g. kaoping_adapter_spool_depth)
#   kp_cluster_start NAME       start broker | collector | scorer | scorer-NAME | adapter-NAME
#                               (background)
#   kp_cluster_kill NAME [SIG]  signal it (default KILL) and wait for it to exit
#   kp_cluster_alive NAME       true while it runs
#   kp_cluster_stop_all         SIGTERM everything started, wait
#   kp_wait_sql DSN SQL WANT [SECONDS]
#       poll until `psql -tA -c SQL` prints WANT (default 60 s); on timeout print what it
#       printed last and return 1
#
# Variables set by kp_cluster_init: KP_WORK, KP_BIN, KP_SRC, KP_SCHEME_FILE, KP_SCHEME,
# KP_DSN, KP_COL_PORT, KP_BRK_FRONT, KP_BRK_BACK, KP_CLUSTER (WORK/etc/cluster.yaml), KP_KEYS
# (WORK/keys) and KP_ADAPTER_KEYS (the collector's key file, WORK/etc/adapters.keys.yaml).
#
# Security (issue 6): every hop is CURVE by default, with key pairs made by `kpctl keygen`
# into WORK/keys; the broker authorises the collector's and the scorer's keys
# (WORK/etc/internal.keys.yaml), the collector each adapter's (KP_ADAPTER_KEYS). With
# KP_INSECURE=1 in the environment every daemon gets `insecure: true` (plain TCP) instead.

kp_cluster_init() {
    KP_WORK=$1
    KP_BIN=$2
    KP_SRC=$3
    KP_SCHEME_FILE=$4
    KP_DSN=$5
    KP_SCHEME=$(sed -n 's/^scheme: *//p' "$KP_SCHEME_FILE" | head -n 1)
    mkdir -p "$KP_WORK/etc" "$KP_WORK/logs" "$KP_WORK/spool" "$KP_WORK/pids"
    # every port drawn for this cluster from here on, by kp_pg_free_port and admin ports alike
    export KP_PORTS_FILE=$KP_WORK/admin-ports
    KP_COL_PORT=$(kp_pg_free_port)
    KP_BRK_FRONT=$(kp_pg_free_port)
    KP_BRK_BACK=$(kp_pg_free_port)
    local brk_admin col_admin scr_admin
    brk_admin=127.0.0.1:$(kp__cluster_admin_port)
    col_admin=127.0.0.1:$(kp__cluster_admin_port)
    scr_admin=127.0.0.1:$(kp__cluster_admin_port)
    KP_CLUSTER=$KP_WORK/etc/cluster.yaml
    cat >"$KP_CLUSTER" <<YAML
# The daemons of this local cluster and their admin endpoints (kpctl status --cluster).
daemons:
YAML
    kp_cluster_describe broker broker "$brk_admin"
    kp_cluster_describe collector collector "$col_admin"
    kp_cluster_describe scorer scorer "$scr_admin"
    cat >"$KP_WORK/etc/broker.yaml" <<YAML
instance: local
frontend: tcp://127.0.0.1:$KP_BRK_FRONT
backend: tcp://127.0.0.1:$KP_BRK_BACK
admin: $brk_admin
YAML
    cat >"$KP_WORK/etc/collector.yaml" <<YAML
instance: local
listen: tcp://127.0.0.1:$KP_COL_PORT
broker: tcp://127.0.0.1:$KP_BRK_FRONT
admin: $col_admin
YAML
    cat >"$KP_WORK/etc/scorer.yaml" <<YAML
instance: $KP_SCHEME
broker: tcp://127.0.0.1:$KP_BRK_BACK
db:
  dsn: "$KP_DSN"
schemes:
  - $KP_SCHEME_FILE
migrations: $KP_SRC/schemas/migrations
admin: $scr_admin
YAML
    kp__cluster_secure_init
}

# ---- CURVE (issue 6) ----------------------------------------------------------------------

kp__cluster_keygen() { # NAME: a key pair in KP_KEYS unless it is there already
    [ -f "$KP_KEYS/$1.secret" ] && return 0
    "$KP_BIN/kpctl/kpctl" keygen "$1" --dir "$KP_KEYS" >/dev/null
}

kp__cluster_secure_init() {
    KP_KEYS=$KP_WORK/keys
    KP_ADAPTER_KEYS=$KP_WORK/etc/adapters.keys.yaml
    local f
    if [ "${KP_INSECURE:-0}" = 1 ]; then
        for f in broker collector scorer; do echo "insecure: true" >>"$KP_WORK/etc/$f.yaml"; done
        return 0
    fi
    mkdir -p "$KP_KEYS"
    chmod 700 "$KP_KEYS"
    for f in broker collector scorer; do kp__cluster_keygen "$f" || return 1; done
    printf -- '- aid: collector\n  key: "%s"\n- aid: scorer\n  key: "%s"\n' \
        "$(cat "$KP_KEYS/collector.key")" "$(cat "$KP_KEYS/scorer.key")" \
        >"$KP_WORK/etc/internal.keys.yaml"
    echo "# adapters the collector admits, with their grants (kp_cluster_adapter_keys)" \
        >"$KP_ADAPTER_KEYS"
    cat >>"$KP_WORK/etc/broker.yaml" <<YAML
curve:
  secret_file: $KP_KEYS/broker.secret
  keys_file: $KP_WORK/etc/internal.keys.yaml
YAML
    cat >>"$KP_WORK/etc/collector.yaml" <<YAML
curve:
  secret_file: $KP_KEYS/collector.secret
  server_public_file: $KP_KEYS/broker.key
  keys_file: $KP_ADAPTER_KEYS
YAML
    cat >>"$KP_WORK/etc/scorer.yaml" <<YAML
curve:
  secret_file: $KP_KEYS/scorer.secret
  server_public_file: $KP_KEYS/broker.key
YAML
}

kp_cluster_adapter_keys() {
    local cfg=$KP_WORK/etc/adapter-$1.yaml aid src key
    [ -f "$cfg" ] || { echo "kp_cluster_adapter_keys: no $cfg" >&2; return 1; }
    if [ "${KP_INSECURE:-0}" = 1 ]; then
        grep -q '^insecure:' "$cfg" || echo "insecure: true" >>"$cfg"
        return 0
    fi
    aid=$(sed -n 's/^aid: *\([^ #]*\).*/\1/p' "$cfg" | head -n 1)
    src=$(sed -n 's/^src: *\([^ #]*\).*/\1/p' "$cfg" | head -n 1)
    [ -n "$aid" ] && [ -n "$src" ] || { echo "kp_cluster_adapter_keys: $cfg: no aid or src" >&2; return 1; }
    kp__cluster_keygen "adapter-$aid" || return 1
    key=$(cat "$KP_KEYS/adapter-$aid.key")
    grep -q '^curve:' "$cfg" || cat >>"$cfg" <<YAML
curve:
  secret_file: $KP_KEYS/adapter-$aid.secret
  server_public_file: $KP_KEYS/collector.key
YAML
    # The collector's key file: this aid's entry, replaced when it differs (a changed config).
    local entry
    entry=$(printf -- '- aid: %s\n  key: "%s"\n  grants:\n    - scheme: %s\n      src: %s\n      indicators: ["*"]' \
        "$aid" "$key" "$KP_SCHEME" "$src")
    [ "$(awk -v aid="$aid" '/^- aid: / { on = ($3 == aid) } on' "$KP_ADAPTER_KEYS")" = "$entry" ] && return 0
    awk -v aid="$aid" '/^- aid: / { skip = ($3 == aid) } !skip' "$KP_ADAPTER_KEYS" >"$KP_ADAPTER_KEYS.tmp"
    printf '%s\n' "$entry" >>"$KP_ADAPTER_KEYS.tmp"
    mv "$KP_ADAPTER_KEYS.tmp" "$KP_ADAPTER_KEYS"
    if kp_cluster_alive collector; then kill -HUP "$(cat "$KP_WORK/pids/collector")"; fi
}

# A free TCP port below the kernel's ephemeral range (ip_local_port_range), so that no
# outgoing connection of this or another test takes it between now and the daemon's bind.
# Ports handed out to this cluster are remembered in WORK/admin-ports and never given twice:
# the daemons bind them only later, so "free now" alone let two daemons draw the same one.
kp__cluster_admin_port() {
    local lo=32768 i port given=${KP_PORTS_FILE:-${KP_WORK:+$KP_WORK/admin-ports}}
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    [ "$lo" -gt 12000 ] || { kp_pg_free_port; return; }
    for i in $(seq 1 200); do
        port=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))
        if [ -n "$given" ] && grep -qx "$port" "$given" 2>/dev/null; then
            continue
        fi
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        if command -v ss >/dev/null 2>&1 && ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
            continue
        fi
        [ -z "$given" ] || { echo "$port" >>"$given"; } 2>/dev/null || true
        echo "$port"
        return 0
    done
    kp_pg_free_port
}

kp_cluster_describe() {
    printf '  - name: %s\n    kind: %s\n    admin: %s\n' "$1" "$2" "$3" >>"$KP_CLUSTER"
}

kp_cluster_prometheus_config() {
    local out=$1 every=${2:-5s}
    {
        cat <<YAML
# Scrapes the local cluster of $KP_WORK (written by kp_cluster_prometheus_config).
global:
  scrape_interval: $every
  evaluation_interval: $every
rule_files:
  - $KP_SRC/deploy/prometheus/rules/kaoping.rules.yml
scrape_configs:
YAML
        awk '/^  - name: / { name = $3 } /^    kind: / { kind = $2 }
             /^    admin: / { jobs[kind] = jobs[kind] sprintf("      - targets: [\"%s\"]\n        labels: {daemon: %s}\n", $2, name) }
             END { n = split("broker collector scorer adapter", k, " ")
                   for (i = 1; i <= n; i++) if (k[i] in jobs)
                       printf "  - job_name: kaoping-%s\n    static_configs:\n%s", k[i], jobs[k[i]] }' "$KP_CLUSTER"
    } >"$out"
}

kp_cluster_admin() {
    sed -n 's/^admin: *//p' "$KP_WORK/etc/$1.yaml" | head -n 1
}

kp_cluster_scorer() {
    local name=scorer-$1 admin
    admin=127.0.0.1:$(kp_pg_free_port)
    grep -q "^  - name: $name\$" "$KP_CLUSTER" || kp_cluster_describe "$name" scorer "$admin"
    admin=$(sed -n "/^  - name: $name\$/,/admin:/s/^    admin: *//p" "$KP_CLUSTER")
    sed "s/^admin: .*/admin: $admin/" "$KP_WORK/etc/scorer.yaml" >"$KP_WORK/etc/$name.yaml"
}

kp_cluster_adapter() {
    local name=$1 src=$2 sdsn=$3 qfile=$4 extra=${5:-}
    local query admin
    query=$(sed 's/\\/\\\\/g; s/"/\\"/g' "$qfile" | tr '\n' ' ')
    admin=127.0.0.1:$(kp__cluster_admin_port)
    # Written again for the same NAME (a test changing its settings): listed once.
    grep -q "^  - name: adapter-$name\$" "$KP_CLUSTER" || kp_cluster_describe "adapter-$name" adapter "$admin"
    admin=$(sed -n "/^  - name: adapter-$name\$/,/admin:/s/^    admin: *//p" "$KP_CLUSTER")
    {
        cat <<YAML
instance: $name
aid: $name
scheme: $KP_SCHEME
src: $src
collector: tcp://127.0.0.1:$KP_COL_PORT
spool: $KP_WORK/spool/$name.db
admin: $admin
source:
  driver: sql
  dsn: "$sdsn"
  query: "$query"
  poll_ms: 200
  lag_ms: 500
YAML
        if [ -n "$extra" ]; then printf "%s\n" "$extra"; fi
    } >"$KP_WORK/etc/adapter-$name.yaml"
    kp_cluster_adapter_keys "$name"
}

kp_cluster_start() {
    local name=$1 bin args=()
    case $name in
    broker) bin=$KP_BIN/broker/kp-broker ;;
    collector) bin=$KP_BIN/collector/kp-collector ;;
    scorer | scorer-*) bin=$KP_BIN/scorer/kp-scorer ;;
    adapter-*)
        bin=$KP_BIN/adapters/kp-adapter
        # a config written by hand: keys and grants like kp_cluster_adapter's (issue 6)
        grep -q '^curve:\|^insecure:' "$KP_WORK/etc/$name.yaml" ||
            kp_cluster_adapter_keys "${name#adapter-}" || return 1
        ;;
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
    # A cleanup trap may call this before kp_cluster_init set KP_WORK: nothing was started then.
    [ -n "${KP_WORK:-}" ] || return 0
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

# kp_cluster_adapter_profile NAME PROFILE_FILE [ARG...]: writes WORK/etc/adapter-NAME.yaml
# from a department profile (deploy/profiles/*.yaml). The profile's placeholders @COLLECTOR@,
# @SCHEME@ and @WORK@ become this cluster's; each ARG is either
#   KEY=VALUE           replaces the placeholder @KEY@ (e.g. SOURCE_DSN="host=... dbname=...")
#   'key: value'        sets a top-level key (replaced in place, else appended)
#   'source.key: value' sets a key of the source block (not the block scalar `query`)
# Values are copied literally (no sed or shell metacharacters to escape). The admin endpoint
# gets a fixed free port unless an ARG sets `admin` (kp_cluster_admin reads it back).
# Fails when a placeholder is left unfilled.
kp_cluster_adapter_profile() {
    local name=$1 profile=$2
    shift 2 || return 2
    if [ ! -r "$profile" ]; then
        echo "kp_cluster_adapter_profile: cannot read $profile" >&2
        return 1
    fi
    local out=$KP_WORK/etc/adapter-$name.yaml spec a admin=""
    spec=$(mktemp "$KP_WORK/etc/.profile.XXXXXX")
    {
        printf 'S\tCOLLECTOR\ttcp://127.0.0.1:%s\n' "$KP_COL_PORT"
        printf 'S\tSCHEME\t%s\n' "$KP_SCHEME"
        printf 'S\tWORK\t%s\n' "$KP_WORK"
        for a in "$@"; do
            case $a in
            [[:upper:]]*=*) printf 'S\t%s\t%s\n' "${a%%=*}" "${a#*=}" ;;
            admin:\ *) admin=${a#admin: } ;;
            *:\ *) printf 'K\t%s\t%s\n' "${a%%: *}" "${a#*: }" ;;
            *)
                echo "kp_cluster_adapter_profile: bad argument \"$a\" (KEY=VALUE or 'key: value')" >&2
                rm -f "$spec"
                return 2
                ;;
            esac
        done
        # The admin address: the one asked for, the one this adapter had before (a test
        # rewriting its config), or a fresh fixed port.
        if [ -z "$admin" ] && [ -f "$out" ]; then
            admin=$(sed -n 's/^admin: *//p' "$out" | head -n 1)
            case $admin in *:0 | "") admin="" ;; esac
        fi
        [ -n "$admin" ] || admin=127.0.0.1:$(kp_pg_free_port)
        printf 'K\tadmin\t%s\n' "$admin"
    } >"$spec"
    # Pass 1 notes which keys the profile has; pass 2 writes it with the changes.
    if ! awk -F'\t' '
        function top(line) { return line ~ /^[A-Za-z_][A-Za-z0-9_]*:/ }
        function key(line,  k) { k = line; sub(/^ */, "", k); sub(/:.*/, "", k); return k }
        FILENAME == ARGV[1] {
            if ($1 == "S") { nsub++; sname[nsub] = "@" $2 "@"; sval[nsub] = $3 }
            else { nset++; skey[nset] = $2; sv[nset] = $3 }
            next
        }
        FNR == 1 { pass++; insrc = 0 }
        {
            line = $0
            if (top(line)) insrc = (key(line) == "source")
            # which setting this line is, if any
            hit = 0
            if (top(line)) k = key(line)
            else if (insrc && line ~ /^  [A-Za-z_][A-Za-z0-9_]*:/) k = "source." key(line)
            else k = ""
            for (j = 1; j <= nset; j++) if (k != "" && skey[j] == k) hit = j
            if (pass == 1) { if (hit) have[hit] = 1; next }
            if (hit) {
                sub(/:.*/, "", line)
                line = line ": " sv[hit]
            } else {
                for (j = 1; j <= nsub; j++) {
                    res = ""
                    while ((p = index(line, sname[j])) > 0) {
                        res = res substr(line, 1, p - 1) sval[j]
                        line = substr(line, p + length(sname[j]))
                    }
                    line = res line
                }
            }
            print line
            if (line ~ /^source:/)
                for (j = 1; j <= nset; j++)
                    if (!have[j] && skey[j] ~ /^source\./) {
                        print "  " substr(skey[j], 8) ": " sv[j]
                        have[j] = 1
                    }
        }
        END {
            for (j = 1; j <= nset; j++)
                if (!have[j]) {
                    if (skey[j] ~ /^source\./) print "source:\n  " substr(skey[j], 8) ": " sv[j]
                    else print skey[j] ": " sv[j]
                }
        }' "$spec" "$profile" "$profile" >"$out.tmp"; then
        rm -f "$spec" "$out.tmp"
        return 1
    fi
    rm -f "$spec"
    if grep -n '@[A-Z_][A-Z0-9_]*@' "$out.tmp" >&2; then
        echo "kp_cluster_adapter_profile: $profile: placeholders left unfilled (above)" >&2
        rm -f "$out.tmp"
        return 1
    fi
    mv "$out.tmp" "$out"
    kp_cluster_adapter_keys "$name" || return 1
    if [ -n "${KP_CLUSTER:-}" ] && declare -F kp_cluster_describe >/dev/null &&
        ! grep -q "^  - name: adapter-$name\$" "$KP_CLUSTER" 2>/dev/null; then
        kp_cluster_describe "adapter-$name" adapter "$admin"
    fi
}

# kp_cluster_metric NAME SERIES: the value of one series (the metric name with its labels
# exactly as /metrics prints them, e.g. kaoping_adapter_spool_depth) from NAME's admin
# endpoint; nothing printed (status 1) when it cannot be read.
kp_cluster_metric() {
    local addr body
    addr=$(kp_cluster_admin "$1")
    body=$(curl -fsS --max-time 5 "http://$addr/metrics" 2>/dev/null) || return 1
    printf '%s\n' "$body" | awk -v s="$2" '$1 == s { print $2; found = 1; exit } END { exit !found }'
}
