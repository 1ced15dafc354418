#!/usr/bin/env bash
# Checks of deploy/ (issue 8): the systemd units pass `systemd-analyze verify`, the Prometheus
# configuration and alerting rules pass `promtool check config` / `check rules` and their unit
# tests (`promtool test rules tests/prometheus/kaoping.rules.test.yml`), every metric the rules
# use is one a daemon exports, the example one-city configuration passes each daemon's
# --check-config, and `kpctl status` reads its cluster file. Needs no database.
set -euo pipefail
: "${KP_BUILD_DIR:?set by CTest}" "${KP_SOURCE_DIR:?set by CTest}"
src=$KP_SOURCE_DIR
bin=$KP_BUILD_DIR
work=$(mktemp -d /tmp/kp-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT

check() {
    if [ "$2" = "$3" ]; then
        echo "ok: $1"
    else
        echo "FAIL: $1: got '$2', want '$3'" >&2
        exit 1
    fi
}
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "FAIL: $1 is not installed (deploy/install-deps.sh installs package $2)" >&2
    exit 1
}
need systemd-analyze systemd
need promtool prometheus

# ---- systemd units -----------------------------------------------------------------------
# The units name the installed binaries (/usr/local/bin); verify copies that name the built
# ones (verify checks that ExecStart is executable), and instances of the templates.
units=$work/units
mkdir -p "$units"
for f in "$src"/deploy/systemd/*; do
    sed -e "s|/usr/local/bin/kp-broker|$bin/broker/kp-broker|" \
        -e "s|/usr/local/bin/kp-collector|$bin/collector/kp-collector|" \
        -e "s|/usr/local/bin/kp-scorer|$bin/scorer/kp-scorer|" \
        -e "s|/usr/local/bin/kp-adapter|$bin/adapters/kp-adapter|" "$f" >"$units/$(basename "$f")"
done
cp "$units/kp-scorer@.service" "$units/kp-scorer@anshan-2015.service"
cp "$units/kp-adapter@.service" "$units/kp-adapter@stats.service"
check "units: every daemon has one" \
    "$(cd "$src/deploy/systemd" && ls | tr '\n' ' ')" \
    "kaoping.target kp-adapter@.service kp-broker.service kp-collector.service kp-scorer@.service "
rc=0
out=$(cd "$units" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no ./kaoping.target \
    ./kp-broker.service ./kp-collector.service ./kp-scorer@anshan-2015.service \
    ./kp-adapter@stats.service 2>&1) || rc=$?
echo "$out"
check "systemd-analyze verify: exit 0" "$rc" 0
check "systemd-analyze verify: no warning" "$out" ""
for f in "$src"/deploy/systemd/kp-*.service; do
    for k in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
        'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' SystemCallFilter=@system-service \
        Restart=always 'ExecReload=/bin/kill -HUP $MAINPID' MemoryMax= RestartPreventExitStatus=2; do
        grep -qF "$k" "$f" || { echo "FAIL: $(basename "$f") lacks $k" >&2; exit 1; }
    done
done
echo "ok: every unit carries the hardening options"
check "the adapter's spool is its StateDirectory" \
    "$(grep -c '^StateDirectory=kaoping/adapter-%i$' "$src/deploy/systemd/kp-adapter@.service")" 1

# ---- the example one-city configuration --------------------------------------------------
etc=$src/deploy/etc/kaoping
"$bin/broker/kp-broker" -c "$etc/broker.yaml" --check-config
"$bin/collector/kp-collector" -c "$etc/collector.yaml" --check-config
for f in "$etc"/scorer-*.yaml; do
    "$bin/scorer/kp-scorer" -c "$f" --check-config \
        --set "schemes=$src/schemas/schemes/$(basename "$f" .yaml | sed 's/^scorer-//').yaml" \
        --set "migrations=$src/schemas/migrations"
done
for f in "$etc"/adapter-*.yaml; do
    "$bin/adapters/kp-adapter" -c "$f" --check-config
    name=$(basename "$f" .yaml)
    check "$name: spool in its StateDirectory" "$(sed -n 's/^spool: *\([^ ]*\).*/\1/p' "$f")" \
        "/var/lib/kaoping/$name/spool.db"
    check "$name: listed in cluster.yaml" "$(grep -c "^  - name: $name\$" "$etc/cluster.yaml")" 1
    check "$name: scraped by Prometheus" \
        "$(grep -c "daemon: $name}" "$src/deploy/prometheus/prometheus.yml")" 1
done
echo "ok: the example configuration passes --check-config"
rc=0
out=$("$bin/kpctl/kpctl" status --cluster "$etc/cluster.yaml" --timeout 1 \
    --dsn "host=127.0.0.1 port=1 connect_timeout=1" 2>&1) || rc=$?
check "kpctl status reads the example cluster file (and finds nothing running)" "$rc" 1
check "kpctl status lists its 6 daemons, down" \
    "$(printf '%s\n' "$out" | grep -cE '^[a-z0-9-]+ +(broker|collector|scorer|adapter) +DOWN ')" 6

# ---- Prometheus ----------------------------------------------------------------------------
promtool check config "$src/deploy/prometheus/prometheus.yml"
promtool check rules "$src/deploy/prometheus/rules/kaoping.rules.yml"
(cd "$src" && promtool test rules tests/prometheus/kaoping.rules.test.yml)
echo "ok: promtool check config, check rules, test rules"
# Every metric the rules use is exported by a daemon (names are literals in the sources).
for m in $(grep -oE '\bkaoping_[a-z_]+' "$src/deploy/prometheus/rules/kaoping.rules.yml" |
    sed 's/_bucket$//' | sort -u); do
    grep -rqF "\"$m\"" "$src/lib" "$src/collector" "$src/broker" "$src/scorer" "$src/adapters" ||
        { echo "FAIL: the rules use $m, which no daemon exports" >&2; exit 1; }
done
echo "ok: every metric in the rules is exported"
echo "deploy_checks: all checks passed"
