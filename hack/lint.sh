#!/usr/bin/env bash
# Style gates that need no judgement: banned C functions and clang-format.
# Exit 0 when clean; otherwise lists each offence.
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
files="$(git ls-files '*.c' '*.h')"

# Unbounded or unchecked: use snprintf, memcpy with lengths, strtol with checks
# (lib/strconv.h), strtok_r.
banned='\b(sprintf|vsprintf|strcpy|strcat|atoi|atol|atoll|strtok|gets)\s*\('
if hits="$(echo "${files}" | xargs grep -nE "${banned}" 2>/dev/null)"; then
  echo "banned functions:"
  echo "${hits}"
  rc=1
fi

if command -v clang-format >/dev/null; then
  unformatted="$(echo "${files}" | xargs clang-format --dry-run 2>&1 | grep -oE '^[^:]+\.(c|h)' | sort -u)"
  if [ -n "${unformatted}" ]; then
    echo "not clang-formatted (run: clang-format -i FILE):"
    echo "${unformatted}"
    rc=1
  fi
else
  echo "clang-format missing (hack/deps.sh installs it)"
  rc=1
fi
[ "${rc}" -eq 0 ] && echo "lint: clean ($(echo "${files}" | wc -l) files)"
exit "${rc}"
