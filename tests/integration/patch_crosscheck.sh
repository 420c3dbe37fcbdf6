#!/usr/bin/env bash
# Cross-checks the injector's golden patches with an independent JSON Patch
# implementation: `kubectl patch --local` (offline) applies each NAME.patch.json to
# NAME.pod.json, and the result must equal NAME.golden.json, which the unit tests
# produce with our own ns_patch_apply.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBECTL="${NUTSHELL_BIN}/kubectl"
[ -x "${KUBECTL}" ] || KUBECTL="$(command -v kubectl || true)"
[ -n "${KUBECTL}" ] || skip_all "kubectl not built yet (run hack/tools.sh)"
trap end_tests EXIT

DATA="${ROOT}/tests/unit/injector/testdata/inject"
for patch in "${DATA}"/*.patch.json; do
  name="$(basename "${patch}" .patch.json)"
  # kubectl wants a file with a known kind; --local keeps it offline.
  got="$("${KUBECTL}" patch --local --type json -f "${DATA}/${name}.pod.json" \
    -p "$(cat "${patch}")" -o json 2>&1 | jq -S . 2>&1)"
  want="$(jq -S . "${DATA}/${name}.golden.json")"
  if [ "${got}" = "${want}" ]; then
    pass "kubectl applies ${name}.patch.json to the golden pod"
  else
    fail "${name}: kubectl result differs: $(diff <(echo "${want}") <(echo "${got}") | head -20)"
  fi
done
