#!/usr/bin/env bash
# Regenerates testdata/istio/*.save: applies each *.rules file (Istio's rule list, one
# `iptables -t nat` argument list a line) with iptables-legacy / ip6tables-legacy in a
# throwaway network namespace and keeps iptables-save's output without the comment lines.
# Needs root and iptables-legacy. The unit tests compare nutshell-init's rendering to these.
set -euo pipefail
cd "$(dirname "$0")"
ns="nsi-istio-ref-$$"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
for rules in *.rules; do
  case "$rules" in
    *-v6.rules) ipt=ip6tables-legacy; save=ip6tables-legacy-save ;;
    *) ipt=iptables-legacy; save=iptables-legacy-save ;;
  esac
  ip netns add "$ns"
  while IFS= read -r line; do
    case "$line" in '#'* | '') continue ;; esac
    # shellcheck disable=SC2086 # the line is an argument list
    ip netns exec "$ns" "$ipt" -t nat $line
  done <"$rules"
  ip netns exec "$ns" "$save" -t nat | grep -v '^#' >"${rules%.rules}.save"
  ip netns del "$ns"
done
saves=(./*.save)
echo "regenerated: ${saves[*]}"
