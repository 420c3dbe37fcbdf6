#!/usr/bin/env bash
# Prints the stages kwok runs with (what fake nodes and pods do): kwok's default stages
# (hack/tools.sh copies them from its module into stages.yaml next to the binary), with
# match-unmarked.yaml added to the selectors of pod-ready and pod-complete, followed by
# our stage-*.yaml. hack/cluster.sh runs this on every kwok start, so an edit here takes
# effect with `hack/cluster.sh restart-kwok`, without rebuilding anything.
#
# Usage: hack/kwok/stages.sh DEFAULT_STAGES_YAML >OUT
#
# The "broken version" markers are defined once, here, and filled into the YAML files
# where they say @BROKEN_TAG@ and @CRASHLOOP_TAG@. They are regular expressions (RE2,
# for both jq's test() and the templates' regexMatch) on a container's image reference:
# its tag (after the last ':' that has no '/' after it, so not a registry port) is
# `broken` or ends in `-broken`, resp. `crashloop` / `-crashloop`; a digest may follow.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BROKEN_TAG=':([^:/@]*-)?broken(@[^@]*)?$'
CRASHLOOP_TAG=':([^:/@]*-)?crashloop(@[^@]*)?$'
# The default stages that must not match a pod with a marked container.
PATCHED=(pod-ready pod-complete)

die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DEFAULT_STAGES_YAML"
[ -f "$1" ] || die "$1 missing; run hack/tools.sh --force kwok"

# The markers go into sed replacements delimited by '|', where '&' and '\' would be
# special too.
fill() {
  sed -e "s|@BROKEN_TAG@|${BROKEN_TAG}|g" -e "s|@CRASHLOOP_TAG@|${CRASHLOOP_TAG}|g" "$@"
}

# Inserts the fragment right after `matchExpressions:` in each PATCHED stage, once, and
# fails unless every one of them was found: a kwok release that renamed or reshaped its
# stages must not silently leave broken pods to the default pod-ready stage.
patch_defaults() {
  awk -v names="${PATCHED[*]}" -v frag="$2" '
    BEGIN {
      n = split(names, list, " ")
      for (i = 1; i <= n; i++) want[list[i]] = 0
      while ((getline line < frag) > 0) if (line !~ /^#/) extra = extra line "\n"
      close(frag)
    }
    /^---/ { name = "" }
    prev == "metadata:" && /^  name: / { name = $2 }
    { prev = $0; print }
    /^    matchExpressions:$/ && (name in want) && want[name] == 0 {
      printf "%s", extra
      want[name] = 1
    }
    END {
      for (k in want) if (want[k] != 1) { print "stage " k ": not found" > "/dev/stderr"; bad = 1 }
      exit bad
    }' "$1"
}

frag="$(mktemp)"
trap 'rm -f "${frag}"' EXIT
fill "${HERE}/match-unmarked.yaml" >"${frag}"
out="$(patch_defaults "$1" "${frag}")" || die "cannot add match-unmarked.yaml to $1"
for f in "${HERE}"/stage-*.yaml; do
  out+=$'\n---\n'"$(fill "${f}")"
done
if grep -q '@[A-Z_]*_TAG@' <<<"${out}"; then
  die "unknown @..._TAG@ marker left in the stages"
fi
printf '%s\n' "${out}"
