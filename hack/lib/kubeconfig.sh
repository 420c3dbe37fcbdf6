# shellcheck shell=bash
# Kubeconfigs that act as a ServiceAccount. Sourced, not executed.
#
# kubeconfig_for SA FILE [NAMESPACE [DURATION]]
#   Writes FILE (mode 0600), a kubeconfig holding a token of the ServiceAccount SA in
#   NAMESPACE (default nutshell-system), valid for DURATION (default 1h), and the server
#   and CA of the current kubeconfig's cluster. This is how a process run outside the
#   cluster gets exactly the rights a pod of that ServiceAccount would have: the local
#   nutshell-operator of hack/run.sh and of the tests runs on the chart's RBAC alone, and
#   the chart's pre-delete hook command on the hook's.
#   The token is a bound token (TokenRequest): deleting the ServiceAccount revokes it.

kubeconfig_for() {
  local sa="$1" file="$2" ns="${3:-nutshell-system}" duration="${4:-1h}" token server ca
  token="$(kubectl -n "${ns}" create token "${sa}" --duration "${duration}")" || return 1
  server="$(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}')"
  ca="$(kubectl config view --raw --minify --flatten -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}')"
  rm -f "${file}"
  (
    umask 077
    cat >"${file}" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "${server}", certificate-authority-data: "${ca}"}}]
users: [{name: u, user: {token: "${token}"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
EOF
  )
}
