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
  iptables iproute2 jq curl openssl procps psmisc
  # benchmarks
  wrk nghttp2-client nginx-light
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
