#!/usr/bin/env bash
# Installs the Debian packages kaoping needs to build, test and run its local cluster.
# Idempotent and non-interactive: packages already present are left alone, and
# `apt-get update` runs at most once, only when something is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libzmq3-dev libmsgpack-dev libuv1-dev libcmocka-dev libpq-dev
  libsqlite3-dev libyaml-dev libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev
  postgresql postgresql-client sqlite3 procps util-linux
  prometheus-alertmanager   # issue 7: the alert tests start a real Alertmanager
  prometheus systemd
  clang libclang-rt-14-dev  # issue 5: the libFuzzer targets (tests/fuzz/run.sh)
  curl                      # tests: /readyz and /metrics of the daemons
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
