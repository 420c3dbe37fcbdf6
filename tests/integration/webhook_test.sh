#!/usr/bin/env bash
# The injector through a real kube-apiserver: the API server calls nutshell-injector
# on https://127.0.0.1 (url clientConfig with caBundle), with the namespace and object
# selectors of DESIGN.md, and its own validation judges every mutated pod.
#
# Usage: webhook_test.sh PATH/TO/nutshell-injector   (needs: hack/cluster.sh up)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INJECTOR="${1:?usage: webhook_test.sh PATH/TO/nutshell-injector}"
require_cluster

WORK="$(mktemp -d)"
NS_ON="inj-on-$$"
NS_OFF="inj-off-$$"
WEBHOOK="nutshell-sidecar-injector-test-$$"
INJ_PID=""

cleanup() {
  [ -n "${INJ_PID}" ] && kill "${INJ_PID}" 2>/dev/null && wait "${INJ_PID}" 2>/dev/null
  kubectl delete mutatingwebhookconfiguration "${WEBHOOK}" --ignore-not-found >/dev/null 2>&1
  kubectl delete namespace "${NS_ON}" "${NS_OFF}" --wait=false --ignore-not-found >/dev/null 2>&1
  kubectl -n kube-system delete pod "sys-$$" --ignore-not-found --wait=false >/dev/null 2>&1
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

# --- a throwaway CA and a serving certificate for IP 127.0.0.1
source "${ROOT}/hack/lib/webhook.sh"
make_serving_cert "${WORK}"

PORT="$(free_port)"
MPORT="$(free_port)"
start_injector() {
  : >"${WORK}/config.json" # empty file: built-in defaults
  "${INJECTOR}" serve --listen "127.0.0.1:${PORT}" --metrics-listen "127.0.0.1:${MPORT}" \
    --tls-cert "${WORK}/tls.crt" --tls-key "${WORK}/tls.key" --config "${WORK}/config.json" \
    --log-level debug >>"${WORK}/injector.log" 2>&1 &
  INJ_PID=$!
  wait_for 10 curl -fsS "http://127.0.0.1:${MPORT}/readyz"
}
stop_injector() {
  kill "${INJ_PID}" 2>/dev/null
  wait "${INJ_PID}" 2>/dev/null
  INJ_PID=""
}

write_webhook() {
  render_webhook "${WEBHOOK}" "https://127.0.0.1:${PORT}/inject" "${WORK}/ca.crt" "$1" |
    kubectl apply -f - >/dev/null
}

# pod NAMESPACE NAME [LABELS_JSON] [ANNOTATIONS_JSON] [EXTRA_SPEC_JSON]: creates a pod.
pod() {
  local ns="$1" name="$2" labels="${3:-{\}}" annotations="${4:-{\}}" extra="${5:-{\}}"
  jq -n --arg ns "${ns}" --arg name "${name}" --argjson l "${labels}" --argjson a "${annotations}" \
    --argjson extra "${extra}" '{apiVersion:"v1",kind:"Pod",
      metadata:{name:$name,namespace:$ns,labels:$l,annotations:$a},
      spec:({containers:[{name:"app",image:"registry.example/app:1",
             ports:[{name:"http",containerPort:8080}],
             readinessProbe:{httpGet:{path:"/ready",port:"http"}}}]} + $extra)}' |
    kubectl create -f - 2>&1
}

# injected NAMESPACE POD: "init,proxy,status" names found, e.g. "nutshell-init,nutshell-proxy,yes"
injected() {
  kubectl -n "$1" get pod "$2" -o json | jq -r '[
      ([.spec.initContainers[]?.name | select(startswith("nutshell"))] | join("+")),
      ([.spec.containers[].name | select(. == "nutshell-proxy")] | join("+")),
      (if .metadata.annotations["nutshell.io/status"] then "status" else "none" end)
    ] | join(",")'
}

start_injector || { fail "injector did not become ready: $(tail -5 "${WORK}/injector.log")"; exit 1; }
write_webhook Fail
kubectl create namespace "${NS_ON}" >/dev/null
kubectl label namespace "${NS_ON}" nutshell.io/inject=enabled >/dev/null
kubectl create namespace "${NS_OFF}" >/dev/null
wait_for 30 kubectl -n "${NS_ON}" get serviceaccount default
wait_for 30 kubectl -n "${NS_OFF}" get serviceaccount default

# --- labelled namespace: injected, and the API server accepted the mutated pod
out="$(pod "${NS_ON}" plain)"
check "pod in labelled namespace is created" "${out}" "pod/plain created"
check "pod in labelled namespace is injected" "$(injected "${NS_ON}" plain)" \
  "nutshell-init,nutshell-proxy,status"
check "init container has only NET_ADMIN and NET_RAW" \
  "$(kubectl -n "${NS_ON}" get pod plain -o json | jq -c '.spec.initContainers[0].securityContext.capabilities')" \
  '{"add":["NET_ADMIN","NET_RAW"],"drop":["ALL"]}'
check "sidecar runs as 1337" \
  "$(kubectl -n "${NS_ON}" get pod plain -o jsonpath='{.spec.containers[1].securityContext.runAsUser}')" "1337"
check "app probe on a named port is kept" \
  "$(kubectl -n "${NS_ON}" get pod plain -o jsonpath='{.spec.containers[0].readinessProbe.httpGet.port}')" "http"

# --- out of scope
pod "${NS_OFF}" unlabelled >/dev/null
check "pod in unlabelled namespace is not injected" "$(injected "${NS_OFF}" unlabelled)" ",,none"
pod "${NS_ON}" optout '{"nutshell.io/inject":"false"}' >/dev/null
check "pod labelled nutshell.io/inject=false is not injected" "$(injected "${NS_ON}" optout)" ",,none"
pod "${NS_ON}" hostnet '{}' '{}' '{"hostNetwork":true}' >/dev/null
check "hostNetwork pod is not injected" "$(injected "${NS_ON}" hostnet)" ",,none"
kubectl label namespace kube-system nutshell.io/inject=enabled --overwrite >/dev/null
pod kube-system "sys-$$" '{"nutshell.io/inject":"true"}' >/dev/null
check "kube-system pod is not injected, even labelled" "$(injected kube-system "sys-$$")" ",,none"
kubectl label namespace kube-system nutshell.io/inject- >/dev/null

# --- opt-in pod in an unlabelled namespace
pod "${NS_OFF}" optin '{"nutshell.io/inject":"true"}' >/dev/null
check "pod labelled nutshell.io/inject=true in unlabelled namespace is injected" \
  "$(injected "${NS_OFF}" optin)" "nutshell-init,nutshell-proxy,status"

# --- native sidecar: an init container with restartPolicy Always, accepted by the API server
out="$(pod "${NS_ON}" native '{}' '{"proxy.nutshell.io/native-sidecar":"true"}')"
check "native-sidecar pod is created" "${out}" "pod/native created"
check "native sidecar is init container 2 with restartPolicy Always" \
  "$(kubectl -n "${NS_ON}" get pod native -o json | jq -r '.spec.initContainers[1] | "\(.name)/\(.restartPolicy)"')" \
  "nutshell-proxy/Always"

# --- a bad annotation is refused with a message that names it
out="$(pod "${NS_ON}" badannotation '{}' '{"traffic.nutshell.io/exclude-outbound-ports":"5432,pg"}')"
case "${out}" in
*"annotation traffic.nutshell.io/exclude-outbound-ports: \"pg\" is not a port"*) pass "bad annotation refused by name" ;;
*) fail "bad annotation: ${out}" ;;
esac

# --- a Deployment: its pods are injected, scheduled and Ready (kwok); a rollout does not inject twice
cat <<YAML | kubectl apply -f - >/dev/null
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ${NS_ON}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.example/web:1}]
YAML
if kubectl -n "${NS_ON}" rollout status deployment/web --timeout=60s >/dev/null 2>&1; then
  pass "deployment of injected pods becomes ready"
else
  fail "deployment not ready: $(kubectl -n "${NS_ON}" get pods -o wide 2>&1 | tr '\n' ';')"
fi
counts() {
  kubectl -n "${NS_ON}" get pods -l app=web -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null) |
      ([.spec.containers[].name, .spec.initContainers[]?.name] | map(select(startswith("nutshell"))) | length)]
      | map(tostring) | join(",")'
}
check "each deployment pod has one init and one proxy" "$(counts)" "2,2"
kubectl -n "${NS_ON}" set env deployment/web RELEASE=2 >/dev/null
kubectl -n "${NS_ON}" rollout status deployment/web --timeout=60s >/dev/null 2>&1
wait_for 30 bash -c "[ \"\$(kubectl -n ${NS_ON} get pods -l app=web --no-headers | wc -l)\" = 2 ]"
check "after a rollout, still exactly one init and one proxy per pod" "$(counts)" "2,2"
check "the deployment's own template is not mutated" \
  "$(kubectl -n "${NS_ON}" get deployment web -o json | jq '.spec.template.spec.containers | length')" "1"

# --- manual injection: the API server validates what `inject -f` prints (server-side dry run)
kubectl create namespace "${NS_OFF}-manual" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if out="$("${INJECTOR}" inject -f "${ROOT}/manifests/samples/bookinfo/bookinfo.yaml" 2>/dev/null |
  kubectl -n "${NS_OFF}-manual" apply --dry-run=server -f - 2>&1)"; then
  pass "inject -f on Bookinfo prints objects the API server accepts ($(echo "${out}" | grep -c 'deployment.apps') deployments)"
else
  fail "inject -f output refused by the API server: ${out}"
fi
check "inject -f adds the sidecar to every Bookinfo deployment" \
  "$("${INJECTOR}" inject -f "${ROOT}/manifests/samples/bookinfo/bookinfo.yaml" -o json 2>/dev/null |
    jq '[.items[] | select(.kind == "Deployment") | .spec.template.spec.containers[-1].name] | unique | join(",")' -r)" \
  "nutshell-proxy"
kubectl delete namespace "${NS_OFF}-manual" --wait=false >/dev/null 2>&1

# --- webhook down: Fail refuses with a message naming the webhook; Ignore lets pods through
stop_injector
out="$(pod "${NS_ON}" whiledown)"
case "${out}" in
*'failed calling webhook "namespace.sidecar.nutshell.io"'*) pass "failurePolicy Fail refuses pods and names the webhook" ;;
*) fail "failurePolicy Fail: ${out}" ;;
esac
write_webhook Ignore
out="$(pod "${NS_ON}" whiledown)"
check "failurePolicy Ignore lets the pod through" "${out}" "pod/whiledown created"
check "...uninjected" "$(injected "${NS_ON}" whiledown)" ",,none"
