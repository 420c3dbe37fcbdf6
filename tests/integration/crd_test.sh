#!/usr/bin/env bash
# The Mesh and Canary CustomResourceDefinitions against a real kube-apiserver: they are
# accepted and Established, `kubectl explain` prints their descriptions, the samples are
# accepted, defaults are filled in, bad specs are refused with our messages, the status
# subresource, printer columns, short names and the `nutshell` category work.
#
# Usage: crd_test.sh   (needs: hack/cluster.sh up)
# Refusals use `kubectl apply --dry-run=server`, so they leave nothing behind. Objects
# this test creates carry its PID in their names and are deleted at the end; the CRDs
# are deleted only if they were not installed before the test.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_cluster

WORK="$(mktemp -d)"
# A private discovery cache: a stale one (from before the CRDs existed) would make
# kubectl miss the new resources, short names and category.
export KUBECACHEDIR="${WORK}/kube-cache"
NS="crd-test-$$"
MESH="crd-test-$$"
CRDS=(meshes.nutshell.io canaries.nutshell.io)
MESH_CRD="${ROOT}/manifests/crds/meshes.nutshell.io.yaml"
CANARY_CRD="${ROOT}/manifests/crds/canaries.nutshell.io.yaml"
MESH_SAMPLE="${ROOT}/manifests/samples/mesh-default.yaml"
CANARY_SAMPLE="${ROOT}/manifests/samples/bookinfo/reviews-canary.yaml"
PREEXISTING=()

cleanup() {
  local crd
  kubectl delete namespace "${NS}" --wait=false --ignore-not-found >/dev/null 2>&1
  kubectl delete mesh.v1alpha1.nutshell.io "${MESH}" "${MESH}-min" "${MESH}-sample" \
    --ignore-not-found >/dev/null 2>&1
  for crd in "${CRDS[@]}"; do
    [[ " ${PREEXISTING[*]-} " == *" ${crd} "* ]] && continue
    kubectl delete crd "${crd}" --ignore-not-found --wait=false >/dev/null 2>&1
  done
  rm -rf "${WORK}"
}
trap 'end_tests cleanup' EXIT

# has_text DESCRIPTION NEEDLE HAYSTACK
has_text() {
  if [[ "$3" == *"$2"* ]]; then pass "$1"; else fail "$1: '$2' not in: $3"; fi
}

# refused DESCRIPTION EXPECTED_MESSAGE COMMAND...: the API server must refuse the object
# that COMMAND prints (a server-side dry run: nothing is stored), with a message that
# contains EXPECTED_MESSAGE. (Not `COMMAND | refused`: a pipeline's last part runs in a
# subshell, and the pass/fail counts would be lost.)
refused() {
  local desc="$1" want="$2" out
  shift 2
  if out="$("$@" | kubectl apply --dry-run=server -f - 2>&1)"; then
    fail "${desc}: accepted, want refused with '${want}'"
  elif [[ "${out}" == *"${want}"* ]]; then
    pass "${desc}"
  else
    fail "${desc}: refused, but '${want}' not in: ${out}"
  fi
}

# accepted DESCRIPTION COMMAND...: a server-side dry run of what COMMAND prints succeeds.
accepted() {
  local desc="$1" out
  shift
  if out="$("$@" | kubectl apply --dry-run=server -f - 2>&1)"; then pass "${desc}"; else fail "${desc}: ${out}"; fi
}

# canary [JQ_FILTER]: a valid minimal Canary in ${NS}, changed by JQ_FILTER.
canary() {
  jq -n --arg ns "${NS}" '{apiVersion: "nutshell.io/v1alpha1", kind: "Canary",
      metadata: {name: "probe", namespace: $ns},
      spec: {targetRef: {name: "reviews"}, service: {port: 9080},
             strategy: {canary: {stepWeight: 10}}}}' | jq "${1:-.}"
}

# mesh [JQ_FILTER]: a valid minimal Mesh, changed by JQ_FILTER.
mesh() {
  jq -n --arg name "${MESH}-probe" '{apiVersion: "nutshell.io/v1alpha1", kind: "Mesh",
      metadata: {name: $name}, spec: {}}' | jq "${1:-.}"
}

# --- install the CRDs
for crd in "${CRDS[@]}"; do
  kubectl get crd "${crd}" >/dev/null 2>&1 && PREEXISTING+=("${crd}")
done
[ ${#PREEXISTING[@]} -eq 0 ] || echo "already installed, kept at the end: ${PREEXISTING[*]}"
if out="$(kubectl apply -f "${MESH_CRD}" -f "${CANARY_CRD}" 2>&1)"; then
  pass "both CRDs are accepted by the API server"
else
  fail "CRDs refused: ${out}"
  exit 1
fi
for crd in "${CRDS[@]}"; do
  if kubectl wait --for=condition=Established "crd/${crd}" --timeout=60s >/dev/null 2>&1; then
    pass "${crd} is Established"
  else
    fail "${crd} not Established: $(kubectl get crd "${crd}" -o jsonpath='{.status.conditions}' 2>&1)"
  fi
done
check "names accepted (short names, category)" \
  "$(kubectl get crd "${CRDS[@]}" -o json | jq -r '[.items[].status.conditions[] | select(.type == "NamesAccepted") | .status] | join(",")')" \
  "True,True"
# Discovery and the OpenAPI document follow a new CRD within seconds.
wait_for 30 kubectl get nmesh
wait_for 30 kubectl get ncanary -A

kubectl create namespace "${NS}" >/dev/null

# --- kubectl explain prints our descriptions (the published OpenAPI v3 schema)
explain() { kubectl explain --api-version=nutshell.io/v1alpha1 "$1" 2>&1; }
wait_for 30 bash -c "kubectl explain --api-version=nutshell.io/v1alpha1 mesh.spec.proxy | grep -q nativeSidecar"
out="$(explain mesh.spec.proxy)"
has_text "explain mesh.spec.proxy describes the block" "The nutshell-proxy sidecar added to every injected pod" "${out}"
has_text "explain mesh.spec.proxy describes nativeSidecar" "Inject the proxy as a native sidecar" "${out}"
has_text "explain mesh.spec.proxy lists the logLevel enum" "enum: debug, info, warn, error" "${out}"
wait_for 30 bash -c "kubectl explain --api-version=nutshell.io/v1alpha1 canary.spec.strategy.canary | grep -q stepWeights"
out="$(explain canary.spec.strategy.canary)"
has_text "explain canary.spec.strategy.canary describes the block" "Shift traffic to the new version in steps" "${out}"
has_text "explain canary.spec.strategy.canary describes stepWeights" "The canary weights of each step, in ascending order" "${out}"
has_text "explain canary.spec.strategy.canary gives maxWeight's default" "Default: 50" "${out}"
has_text "explain mesh.spec.certificates.renewBefore" "Shorter than validity" \
  "$(explain mesh.spec.certificates.renewBefore)"

# --- the samples are accepted (the Mesh under another name: `default` may be in use)
if out="$(kubectl apply --dry-run=server -f "${MESH_SAMPLE}" 2>&1)"; then
  pass "sample Mesh is accepted (server dry run)"
else
  fail "sample Mesh refused: ${out}"
fi
out="$(sed "s/^  name: default\$/  name: ${MESH}-sample/" "${MESH_SAMPLE}" | kubectl apply -f - 2>&1)"
check "sample Mesh can be created" "${out}" "mesh.nutshell.io/${MESH}-sample created"
out="$(kubectl -n "${NS}" apply -f "${CANARY_SAMPLE}" 2>&1)"
check "sample Canary is created" "${out}" "canary.nutshell.io/reviews created"

# --- defaults
mesh ".metadata.name = \"${MESH}-min\" | del(.spec)" | kubectl apply -f - >/dev/null
mesh_spec="$(kubectl get mesh.v1alpha1.nutshell.io "${MESH}-min" -o json | jq -c .spec)"
check "a Mesh with no spec gets every default" "${mesh_spec}" \
  "$(jq -cn '{certificates: {caValidity: "87600h", renewBefore: "720h", validity: "2160h"},
    injector: {failurePolicy: "Fail", replicas: 2, timeoutSeconds: 10},
    proxy: {holdApplication: false, imagePullPolicy: "IfNotPresent", logLevel: "info", nativeSidecar: false},
    revision: "default", traffic: {includeInboundPorts: "*", includeOutboundCIDRs: "*"}}')"
canary '.metadata.name = "minimal"' | kubectl apply -f - >/dev/null
check "a minimal Canary gets maxWeight 50, interval 1m, threshold 5, progressDeadlineSeconds 600" \
  "$(kubectl -n "${NS}" get canary minimal -o json | jq -c '[.spec.strategy.canary.maxWeight,
      .spec.strategy.canary.interval, .spec.analysis.threshold, .spec.progressDeadlineSeconds]')" \
  '[50,"1m",5,600]'
check "...and targetRef, service and suspend defaults" \
  "$(kubectl -n "${NS}" get canary minimal -o json | jq -c '[.spec.targetRef.apiVersion,
      .spec.targetRef.kind, .spec.service.portName, .spec.suspend]')" \
  '["apps/v1","Deployment","http",false]'
check "a blueGreen Canary gets iterations 10, interval 1m, autoPromote true" \
  "$(canary '.spec.strategy = {blueGreen: {}}' | kubectl apply --dry-run=server -o json -f - |
    jq -c '.spec.strategy.blueGreen | [.iterations, .interval, .autoPromote]')" '[10,"1m",true]'
check "a webhook gets timeout 10s" \
  "$(canary '.spec.analysis.webhooks = [{name: "hook", type: "rollout", url: "http://hook.test/"}]' |
    kubectl apply --dry-run=server -o json -f - | jq -c '.spec.analysis.webhooks[0].timeout')" '"10s"'

# --- valid specs beyond the minimum
accepted "a Canary with stepWeights, metrics and webhooks is accepted" \
  canary '.spec.strategy.canary = {stepWeights: [1, 2, 10, 80], maxWeight: 80, interval: "90s"}
  | .spec.service += {name: "reviews-apex", targetPort: "http"}
  | .spec.analysis = {threshold: 2,
      metrics: [{name: "error-rate", query: "sum(rate(errors_total[1m]))",
                 address: "https://prometheus.monitoring:9090", thresholdRange: {max: 1.5}, interval: "1m"}],
      webhooks: [{name: "smoke", type: "pre-rollout", url: "http://loadtester.test/", timeout: "1m30s",
                  metadata: {cmd: "curl -fsS http://reviews-canary:9080/"}},
                 {name: "gate", type: "confirm-promotion", url: "http://gate.test/approve?canary=reviews"}]}
  | .spec.progressDeadlineSeconds = 60 | .spec.suspend = true'
accepted "a Mesh with every block set is accepted" \
  mesh '.spec = {revision: "canary-1", proxy: {resources: {requests: {cpu: "100m", memory: "32Mi"},
    limits: {cpu: 2, memory: "1Gi"}}}, injector: {replicas: 3, failurePolicy: "Ignore", timeoutSeconds: 30},
    traffic: {includeInboundPorts: "8080, 9090", excludeOutboundPorts: "5432,6379,",
      includeOutboundCIDRs: "10.96.0.0/12,fd00::/108", excludeOutboundCIDRs: "169.254.169.254, 2001:db8::1"},
    certificates: {caValidity: "8760h", validity: "24h", renewBefore: "1h30m"}}'

# --- bad specs are refused with our messages
refused "both stepWeight and stepWeights" "set exactly one of stepWeight (a fixed step) or stepWeights" \
  canary '.spec.strategy.canary.stepWeights = [10, 20]'
refused "neither canary nor blueGreen" "set exactly one of strategy.canary or strategy.blueGreen" \
  canary '.spec.strategy = {}'
refused "both canary and blueGreen" "set exactly one of strategy.canary or strategy.blueGreen" \
  canary '.spec.strategy.blueGreen = {}'
refused "maxWeight 150" "maxWeight in body should be less than or equal to 100" \
  canary '.spec.strategy.canary.maxWeight = 150'
refused "stepWeight above maxWeight" "stepWeight must not be greater than maxWeight" \
  canary '.spec.strategy.canary.stepWeight = 60'
refused "stepWeights out of order" "stepWeights must be in strictly ascending order" \
  canary '.spec.strategy.canary = {stepWeights: [10, 5, 20]}'
refused "stepWeights above the default maxWeight" "stepWeights must not be greater than maxWeight (default 50)" \
  canary '.spec.strategy.canary = {stepWeights: [10, 80]}'
refused "duration \"1 minute\"" '"1 minute" is not a positive duration: use a number and a unit, such as 30s, 5m, 1h' \
  canary '.spec.strategy.canary.interval = "1 minute"'
refused "webhook type \"later\"" 'Unsupported value: "later": supported values: "pre-rollout", "rollout", "confirm-promotion", "post-rollout", "rollback"' \
  canary '.spec.analysis.webhooks = [{name: "hook", type: "later", url: "http://hook.test/"}]'
refused "thresholdRange with neither min nor max" "thresholdRange needs min, max or both" \
  canary '.spec.analysis.metrics = [{name: "m", query: "up", address: "http://p:9090", thresholdRange: {}}]'
refused "metric address without http://" "spec.analysis.metrics[0].address in body should match" \
  canary '.spec.analysis.metrics = [{name: "m", query: "up", address: "prometheus:9090", thresholdRange: {min: 1}}]'
refused "targetRef kind StatefulSet" 'Unsupported value: "StatefulSet": supported values: "Deployment"' \
  canary '.spec.targetRef.kind = "StatefulSet"'
refused "targetPort 0" '"0" is neither a port number (1-65535) nor a container port name' \
  canary '.spec.service.targetPort = 0'
refused "a target name that is no Service name, without service.name" \
  'service.name is required: the default, targetRef.name "reviews.v2", is not a valid Service name' \
  canary '.spec.targetRef.name = "reviews.v2"'
refused "service without port" "spec.service.port: Required value" canary 'del(.spec.service.port)'

refused "port list \"80,http\"" '"http" is not a port (1-65535); use a comma-separated list such as "8080,9090"' \
  mesh '.spec.traffic.excludeInboundPorts = "80,http"'
refused "\"*\" inside a port list" '"*" must stand alone, not in a list' \
  mesh '.spec.traffic.includeInboundPorts = "*,8080"'
refused "port 65536" '"65536" is not a port (1-65535)' \
  mesh '.spec.traffic.excludeOutboundPorts = "5432,65536"'
refused "CIDR with host bits set" '"10.0.0.1/8" is not an IP address or a CIDR with its host bits zero' \
  mesh '.spec.traffic.excludeOutboundCIDRs = "10.0.0.0/8,10.0.0.1/8"'
refused "CIDR prefix /33" '"10.0.0.0/33" is not an IP address or a CIDR' \
  mesh '.spec.traffic.includeOutboundCIDRs = "10.0.0.0/33"'
refused "certificate validity \"1 minute\"" '"1 minute" is not a positive duration' \
  mesh '.spec.certificates.validity = "1 minute"'
refused "renewBefore longer than validity" "renewBefore (3000h) must be shorter than validity (2160h)" \
  mesh '.spec.certificates.renewBefore = "3000h"'
refused "validity longer than caValidity" "validity (100000h) must not be longer than caValidity (87600h)" \
  mesh '.spec.certificates.validity = "100000h"'
refused "failurePolicy Retry" 'Unsupported value: "Retry": supported values: "Fail", "Ignore"' \
  mesh '.spec.injector.failurePolicy = "Retry"'
refused "timeoutSeconds 31" "timeoutSeconds in body should be less than or equal to 30" \
  mesh '.spec.injector.timeoutSeconds = 31'
refused "injector replicas 0" "replicas in body should be greater than or equal to 1" \
  mesh '.spec.injector.replicas = 0'
refused "logLevel verbose" 'Unsupported value: "verbose": supported values: "debug", "info", "warn", "error"' \
  mesh '.spec.proxy.logLevel = "verbose"'
refused "cpu \"lots\"" '"lots" is not a resource quantity' \
  mesh '.spec.proxy.resources = {requests: {cpu: "lots"}}'
refused "memory request above its limit" "requests.memory (128Mi) must not be greater than limits.memory (64Mi)" \
  mesh '.spec.proxy.resources = {requests: {memory: "128Mi"}, limits: {memory: "64Mi"}}'
refused "revision that is no DNS label" "spec.revision in body should match" \
  mesh '.spec.revision = "Canary_1"'

# --- immutable fields
check "targetRef cannot be changed" \
  "$(kubectl -n "${NS}" patch canary minimal --type merge -p '{"spec":{"targetRef":{"name":"ratings"}}}' 2>&1 |
    grep -o 'targetRef cannot be changed; delete the Canary and create a new one')" \
  "targetRef cannot be changed; delete the Canary and create a new one"
check "the Service name cannot be changed" \
  "$(kubectl -n "${NS}" patch canary minimal --type merge -p '{"spec":{"service":{"name":"other"}}}' 2>&1 |
    grep -o 'the Service name (service.name, default targetRef.name) cannot be changed')" \
  "the Service name (service.name, default targetRef.name) cannot be changed"
check "setting service.name to its default is not a change" \
  "$(kubectl -n "${NS}" patch canary minimal --type merge -p '{"spec":{"service":{"name":"reviews"}}}' 2>&1)" \
  "canary.nutshell.io/minimal patched"
check "other Canary fields can be changed" \
  "$(kubectl -n "${NS}" patch canary minimal --type merge -p '{"spec":{"suspend":true,"strategy":{"canary":{"stepWeight":20}}}}' 2>&1)" \
  "canary.nutshell.io/minimal patched"
has_text "Mesh revision cannot be changed" "revision cannot be changed; create a new Mesh for a new revision" \
  "$(kubectl patch mesh.v1alpha1.nutshell.io "${MESH}-min" --type merge -p '{"spec":{"revision":"v2"}}' 2>&1)"

# --- status subresource
kubectl patch mesh.v1alpha1.nutshell.io "${MESH}-sample" --subresource=status --type merge -p '{"status": {
    "observedGeneration": 1, "phase": "Ready",
    "conditions": [{"type": "Ready", "status": "True", "reason": "Installed", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                   {"type": "CertificateReady", "status": "True", "reason": "Valid", "message": "renewal due 2027-01-01", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
    "injector": {"replicas": 2, "readyReplicas": 2},
    "certificate": {"notAfter": "2027-02-01T00:00:00Z", "caNotAfter": "2035-01-01T00:00:00Z"}}}' >/dev/null 2>&1
check "Mesh status is written through the status subresource" \
  "$(kubectl get mesh.v1alpha1.nutshell.io "${MESH}-sample" -o jsonpath='{.status.phase}/{.status.injector.readyReplicas}')" "Ready/2"
kubectl patch mesh.v1alpha1.nutshell.io "${MESH}-sample" --type merge -p '{"status":{"phase":"Degraded"}}' >/dev/null 2>&1
check "status sent to the main resource is ignored" \
  "$(kubectl get mesh.v1alpha1.nutshell.io "${MESH}-sample" -o jsonpath='{.status.phase}')" "Ready"
has_text "a bad status phase is refused" 'Unsupported value: "Bogus"' \
  "$(kubectl patch mesh.v1alpha1.nutshell.io "${MESH}-sample" --subresource=status --type merge -p '{"status":{"phase":"Bogus"}}' 2>&1)"
has_text "a condition without reason is refused" "reason: Required value" \
  "$(kubectl patch mesh.v1alpha1.nutshell.io "${MESH}-sample" --subresource=status --type merge \
    -p '{"status":{"conditions":[{"type":"Ready","status":"True","message":"","lastTransitionTime":"2025-01-01T00:00:00Z"}]}}' 2>&1)"

kubectl -n "${NS}" patch canary reviews --subresource=status --type merge -p '{"status": {
    "observedGeneration": 1, "phase": "Progressing", "canaryWeight": 20, "failedChecks": 1, "iterations": 0,
    "currentRevision": "7d9f8b6c5", "lastPromotedRevision": "5c4b3a291", "lastTransitionTime": "2025-01-01T00:00:00Z",
    "message": "advancing to 20%",
    "conditions": [{"type": "Promoted", "status": "False", "reason": "Progressing", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}' >/dev/null 2>&1
check "Canary status is written through the status subresource" \
  "$(kubectl -n "${NS}" get canary reviews -o jsonpath='{.status.phase}/{.status.canaryWeight}/{.status.conditions[0].type}')" \
  "Progressing/20/Promoted"
has_text "a canaryWeight above 100 is refused" "canaryWeight in body should be less than or equal to 100" \
  "$(kubectl -n "${NS}" patch canary reviews --subresource=status --type merge -p '{"status":{"canaryWeight":101}}' 2>&1)"

# --- printer columns, short names, category
row() { awk -v n="$1" '$1 == n || $2 == n' | tr -s ' '; }
check "kubectl get nmesh: columns" \
  "$(kubectl get nmesh | head -1 | tr -s ' ')" "NAME PHASE REVISION READY CERT-EXPIRY AGE"
check "kubectl get nmesh: values (Cert-Expiry as a timestamp)" \
  "$(kubectl get nmesh --no-headers | row "${MESH}-sample" | cut -d' ' -f1-5)" \
  "${MESH}-sample Ready default True 2027-02-01T00:00:00Z"
check "kubectl get ncanary -A: columns" \
  "$(kubectl get ncanary -A | head -1 | tr -s ' ')" "NAMESPACE NAME PHASE WEIGHT FAILEDCHECKS REVISION AGE"
check "kubectl get ncanary -A: values" \
  "$(kubectl get ncanary -A --no-headers | row reviews | grep "^${NS} " | cut -d' ' -f1-6)" \
  "${NS} reviews Progressing 20 1 7d9f8b6c5"
check "kubectl get ncanary -o wide adds Target and Message" \
  "$(kubectl -n "${NS}" get ncanary reviews -o wide --no-headers | tr -s ' ' | cut -d' ' -f6-9)" \
  "reviews advancing to 20%"
out="$(kubectl get nutshell -A 2>&1)"
has_text "kubectl get nutshell lists Meshes" "mesh.nutshell.io/${MESH}-sample" "${out}"
has_text "kubectl get nutshell lists Canaries" "canary.nutshell.io/reviews" "${out}"
check "kubectl wait --for=condition=Promoted sees the condition" \
  "$(kubectl -n "${NS}" wait --for=condition=Promoted=False canary/reviews --timeout=5s 2>&1)" \
  "canary.nutshell.io/reviews condition met"
