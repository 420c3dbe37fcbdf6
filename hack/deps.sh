#!/usr/bin/env bash
# Installs the Debian packages that building, testing and benchmarking Nutshell need.
# Idempotent: packages already present are not fetched again, and apt's index is only
# refreshed when something is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
  libcurl4-openssl-dev libcjson-dev libssl-dev libmicrohttpd-dev libgnutls28-dev
  libiptc-dev libip4tc-dev libip6tc-dev libyaml-dev libcunit1-dev
  # test harness
  iptables iproute2 jq curl openssl procps psmisc python3-yaml
  # metric analysis tests (each starts its own instance: hack/lib/prometheus.sh)
  prometheus
  # benchmarks (haproxy and nginx: peers of the proxy benchmark)
  wrk nghttp2-client nginx-light haproxy
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
else
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "deps: done"
fi

# The prometheus package installs an enabled service on :9090. Tests start their own
# instances on free ports, so a system one would only hold the port and scrape for
# nothing: keep it stopped and disabled, every run, on systemd and sysvinit alike.
if [ -x /etc/init.d/prometheus ] || [ -f /lib/systemd/system/prometheus.service ]; then
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  else
    $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    # Offline, systemctl only edits the unit links (and the SysV ones with them).
    $SUDO systemctl disable prometheus.service >/dev/null 2>&1 ||
      $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
fi
