# shellcheck shell=bash disable=SC2034
# The user journey, one function per step: `helm install` Nutshell on hack/cluster.sh's
# control plane, run nutshell-operator and nutshell-injector as local processes, deploy
# Bookinfo injected, ship reviews v2 through a Canary (promoted) and a broken v3 (rolled
# back), then take it down with `helm uninstall`. hack/run.sh (the README's command) and
# tests/integration/journey_test.sh (CI) both run these functions, so the test proves
# what users run. Sourced, not executed.
#
# Why local processes: kwok fakes the pods, so the chart's operator Deployment and the
# injector Deployment the operator makes never execute. The operator runs here with a
# token of the chart's ServiceAccount (so on the chart's RBAC alone, as its pod would) in
# local mode (docs/operator.md): the webhook configuration calls
# https://127.0.0.1:J_INJ_PORT/inject and the injector's certificate and config are
# written into J_STATE/injector, which nutshell-injector serves from. The chart needs no
# value for this: local mode is two flags of the operator.
#
# Needs KUBECONFIG (eval "$(hack/cluster.sh env)"), kubectl, jq and python3-yaml. Set the
# J_* variables before sourcing to change the defaults (hack/run.sh's). Each function
# returns 0 or 1 and says why on stderr; none relies on `set -e`.

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=hack/lib/kubeconfig.sh
source "$(dirname "${BASH_SOURCE[0]}")/kubeconfig.sh"

# hack/run.sh's state: pid files, logs, kubeconfigs, the injector's files, and the file
# "installed" while its release exists. The test looks here to refuse to run over a
# user's install.
JOURNEY_RUN_STATE="${NUTSHELL_STATE}/run"

: "${J_STATE:=${JOURNEY_RUN_STATE}}"
: "${J_OPERATOR:=${NUTSHELL_ROOT}/build/operator/nutshell-operator}"
: "${J_INJECTOR:=${NUTSHELL_ROOT}/build/injector/nutshell-injector}"
: "${J_HELM:=${NUTSHELL_BIN}/helm}"
: "${J_RELEASE:=nutshell}"
: "${J_CP_NS:=nutshell-system}"
: "${J_APP_NS:=bookinfo}"
: "${J_INJ_PORT:=${NUTSHELL_INJECTOR_PORT:-19443}}"
: "${J_INJ_METRICS_PORT:=${NUTSHELL_INJECTOR_METRICS_PORT:-19090}}"
: "${J_OP_METRICS_PORT:=${NUTSHELL_OPERATOR_METRICS_PORT:-19091}}"
# The proxies' route tables (docs/operator.md); nothing on this cluster long-polls them
# (kwok's pods run no proxy), but `curl 127.0.0.1:19010/v1/routes` shows what they would get.
: "${J_OP_ROUTES_PORT:=${NUTSHELL_OPERATOR_ROUTES_PORT:-19010}}"
# Empty: the Canary controller watches every namespace, as the chart's operator does.
: "${J_CANARY_NS:=}"
# The operator's Lease holder (POD_NAME in a cluster).
: "${J_IDENTITY:=hack-run}"
# How long the operator's token lives: the process outlives the script.
: "${J_TOKEN_DURATION:=720h}"
# The demo's Canary timing, instead of the sample's 1m steps and 600 s deadline: a step
# every 3 s, and a version that is not ready 30 s after a step is rolled back.
: "${J_CANARY_INTERVAL:=3s}"
: "${J_CANARY_DEADLINE:=30}"

J_CHART="${NUTSHELL_ROOT}/charts/nutshell"
J_SAMPLES="${NUTSHELL_ROOT}/manifests/samples/bookinfo"
# The chart's names for release J_RELEASE (templates/_helpers.tpl: the release name when
# it contains "nutshell", else "<release>-nutshell") and its default Mesh.
if [[ "${J_RELEASE}" == *nutshell* ]]; then J_FULLNAME="${J_RELEASE}"; else J_FULLNAME="${J_RELEASE}-nutshell"; fi
J_SA="${J_FULLNAME}-operator"
J_MESH=default
J_WEBHOOK=nutshell-sidecar-injector
J_CANARY=reviews
J_V1_IMAGE=docker.io/istio/examples-bookinfo-reviews-v1:1.20.2
J_V2_IMAGE=docker.io/istio/examples-bookinfo-reviews-v2:1.20.2
# A tag ending in -broken: the fake node keeps the pod unready (docs/harness.md).
J_BROKEN_IMAGE=docker.io/istio/examples-bookinfo-reviews-v3:1.20.2-broken

J_INJ_DIR="${J_STATE}/injector"
J_LOGS="${J_STATE}/logs"
J_OP_PID_FILE="${J_STATE}/operator.pid"
J_INJ_PID_FILE="${J_STATE}/injector.pid"
# The highest canaryWeight journey_follow_canary saw.
JOURNEY_MAX_WEIGHT=0

j_err() { echo "error: $*" >&2; }

# j_wait SECONDS COMMAND...: retries COMMAND every 0.2 s until it succeeds or time is up.
j_wait() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "${SECONDS}" -lt "${deadline}" ] || return 1
    sleep 0.2
  done
}

# j_running_pid PIDFILE BINARY: the pid in PIDFILE if that process is BINARY and alive
# (a pid file left by a dead process, its number reused, must not count).
j_running_pid() {
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1")"
  [ -n "${pid}" ] && kill -0 "${pid}" 2>/dev/null &&
    [ "$(basename "$(readlink "/proc/${pid}/exe" 2>/dev/null)")" = "$2" ] && echo "${pid}"
}
journey_operator_pid() { j_running_pid "${J_OP_PID_FILE}" nutshell-operator; }
journey_injector_pid() { j_running_pid "${J_INJ_PID_FILE}" nutshell-injector; }

# j_stop PIDFILE BINARY: SIGTERM, then up to 10 s for it to exit (the operator finishes
# its reconcile and releases its Lease in under 3 s).
j_stop() {
  local pid
  if pid="$(j_running_pid "$1" "$2")"; then
    kill "${pid}" 2>/dev/null
    for _ in $(seq 100); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "${pid}" 2>/dev/null; then
      echo "$2 (pid ${pid}) ignored SIGTERM for 10 s; killing it" >&2
      kill -KILL "${pid}" 2>/dev/null
    else
      echo "stopped $2 (pid ${pid})"
    fi
  fi
  rm -f "$1"
}
journey_stop_operator() { j_stop "${J_OP_PID_FILE}" nutshell-operator; }
journey_stop_injector() { j_stop "${J_INJ_PID_FILE}" nutshell-injector; }

# j_port_free PORT VARIABLE: fails, naming the variable that moves it, when something
# already listens on 127.0.0.1:PORT.
j_port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    j_err "127.0.0.1:$1 is taken by another process; choose another port with $2=PORT"
    return 1
  fi
}

# j_ensure_namespace NS: creates NS; one still being deleted (a run torn down a moment
# ago) takes no new objects, so that is waited for first.
j_not_terminating() { [ "$(kubectl get namespace "$1" -o 'jsonpath={.status.phase}' 2>/dev/null)" != Terminating ]; }
j_ensure_namespace() {
  j_wait 120 j_not_terminating "$1" || { j_err "namespace $1 is still being deleted after 2 min"; return 1; }
  kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}

# --- 1. helm install

# The release's status (deployed, failed, pending-install, ...), empty when there is none.
journey_release_status() {
  "${J_HELM}" status "${J_RELEASE}" -n "${J_CP_NS}" -o json 2>/dev/null | jq -r '.info.status // empty'
}

journey_install_chart() {
  local st
  mkdir -p "${J_LOGS}"
  st="$(journey_release_status)"
  case "${st}" in
  deployed)
    echo "release ${J_RELEASE} already deployed in ${J_CP_NS}"
    touch "${J_STATE}/installed"
    return 0
    ;;
  "") ;;
  *)
    j_err "release ${J_RELEASE} in ${J_CP_NS} is ${st}; remove it (hack/run.sh uninstall does) and run again"
    return 1
    ;;
  esac
  # A Mesh that no release owns (a hack/run.sh from before the chart, a test that is
  # running) would make the install fail halfway.
  if kubectl get mesh.nutshell.io "${J_MESH}" >/dev/null 2>&1; then
    j_err "a Mesh \"${J_MESH}\" exists that no Helm release owns (a test running, or an older hack/run.sh: hack/run.sh down)"
    return 1
  fi
  echo "\$ helm install ${J_RELEASE} charts/nutshell -n ${J_CP_NS} --create-namespace --wait"
  # From here on a release may exist, even if the install fails.
  touch "${J_STATE}/installed"
  if ! "${J_HELM}" install "${J_RELEASE}" "${J_CHART}" -n "${J_CP_NS}" --create-namespace \
    --wait --timeout 300s >"${J_LOGS}/helm-install.log" 2>&1; then
    cat "${J_LOGS}/helm-install.log" >&2
    return 1
  fi
  sed -n '/^STATUS:/p;/^REVISION:/p' "${J_LOGS}/helm-install.log"
  echo "(the chart's notes: helm status ${J_RELEASE} -n ${J_CP_NS})"
}

# --- 2. the operator, as the chart's ServiceAccount, in local mode

journey_start_operator() {
  local pid args
  if pid="$(journey_operator_pid)"; then
    echo "already running (pid ${pid}, log ${J_LOGS}/operator.log)"
    return 0
  fi
  [ -x "${J_OPERATOR}" ] || { j_err "no ${J_OPERATOR}: build nutshell-operator first"; return 1; }
  j_port_free "${J_OP_METRICS_PORT}" NUTSHELL_OPERATOR_METRICS_PORT || return 1
  j_port_free "${J_OP_ROUTES_PORT}" NUTSHELL_OPERATOR_ROUTES_PORT || return 1
  mkdir -p "${J_LOGS}" "${J_INJ_DIR}"
  kubeconfig_for "${J_SA}" "${J_STATE}/operator.kubeconfig" "${J_CP_NS}" "${J_TOKEN_DURATION}" ||
    { j_err "no token for the ServiceAccount ${J_SA} in ${J_CP_NS} (is the chart installed?)"; return 1; }
  args=(--kubeconfig "${J_STATE}/operator.kubeconfig" --namespace "${J_CP_NS}" --leader-elect=true
    --metrics-listen "127.0.0.1:${J_OP_METRICS_PORT}" --routes-listen "127.0.0.1:${J_OP_ROUTES_PORT}"
    --webhook-url "https://127.0.0.1:${J_INJ_PORT}/inject" --local-injector-dir "${J_INJ_DIR}")
  [ -z "${J_CANARY_NS}" ] || args+=(--canary-namespace "${J_CANARY_NS}")
  # Its own session: it outlives the script and a Ctrl-C typed into it.
  POD_NAME="${J_IDENTITY}" KUBECONFIG="" setsid "${J_OPERATOR}" "${args[@]}" \
    >>"${J_LOGS}/operator.log" 2>&1 </dev/null &
  echo $! >"${J_OP_PID_FILE}"
  if ! j_wait 60 curl -fsS "http://127.0.0.1:${J_OP_METRICS_PORT}/readyz"; then
    j_err "nutshell-operator not ready after 60 s; its log ends:"
    tail -n 15 "${J_LOGS}/operator.log" >&2
    return 1
  fi
  echo "started (pid $(cat "${J_OP_PID_FILE}"), as ServiceAccount ${J_CP_NS}/${J_SA}, log ${J_LOGS}/operator.log)"
}

# --- 3. the injector, from the files the operator writes

# The Secret's tls.crt is in J_INJ_DIR: the operator has written this Mesh's files.
j_files_written() {
  local crt
  crt="$(kubectl -n "${J_CP_NS}" get secret nutshell-injector-tls -o 'jsonpath={.data.tls\.crt}' 2>/dev/null)" &&
    [ -n "${crt}" ] && [ -s "${J_INJ_DIR}/tls.crt" ] && base64 -d <<<"${crt}" | cmp -s - "${J_INJ_DIR}/tls.crt"
}

journey_start_injector() {
  local pid
  if pid="$(journey_injector_pid)"; then
    echo "already running (pid ${pid}; it reloads the files when the operator rewrites them)"
    return 0
  fi
  [ -x "${J_INJECTOR}" ] || { j_err "no ${J_INJECTOR}: build nutshell-injector first"; return 1; }
  j_port_free "${J_INJ_PORT}" NUTSHELL_INJECTOR_PORT || return 1
  j_port_free "${J_INJ_METRICS_PORT}" NUTSHELL_INJECTOR_METRICS_PORT || return 1
  if ! j_wait 90 j_files_written; then
    j_err "the operator wrote no certificate into ${J_INJ_DIR} in 90 s; its log ends:"
    tail -n 15 "${J_LOGS}/operator.log" >&2
    return 1
  fi
  setsid "${J_INJECTOR}" serve --listen "127.0.0.1:${J_INJ_PORT}" \
    --metrics-listen "127.0.0.1:${J_INJ_METRICS_PORT}" --tls-cert "${J_INJ_DIR}/tls.crt" \
    --tls-key "${J_INJ_DIR}/tls.key" --config "${J_INJ_DIR}/config.json" \
    >>"${J_LOGS}/injector.log" 2>&1 </dev/null &
  echo $! >"${J_INJ_PID_FILE}"
  if ! j_wait 20 curl -fsS "http://127.0.0.1:${J_INJ_METRICS_PORT}/readyz"; then
    j_err "nutshell-injector not ready after 20 s; its log ends:"
    tail -n 15 "${J_LOGS}/injector.log" >&2
    return 1
  fi
  echo "started on https://127.0.0.1:${J_INJ_PORT}/inject (pid $(cat "${J_INJ_PID_FILE}"), log ${J_LOGS}/injector.log)"
}

# --- 4. the Mesh

j_mesh_ready() {
  local got phase og gen
  got="$(kubectl get mesh.nutshell.io "${J_MESH}" \
    -o 'jsonpath={.status.phase} {.status.observedGeneration} {.metadata.generation}' 2>/dev/null)" || return 1
  read -r phase og gen <<<"${got}"
  [ "${phase}" = Ready ] && [ "${og}" = "${gen}" ]
}

# journey_wait_mesh_ready SECONDS
journey_wait_mesh_ready() {
  if ! j_wait "$1" j_mesh_ready; then
    j_err "Mesh ${J_MESH} not Ready after $1 s: $(kubectl get mesh.nutshell.io "${J_MESH}" -o 'jsonpath={.status.conditions}' 2>&1)"
    return 1
  fi
  echo "Mesh ${J_MESH} is Ready"
}

# --- 5. Bookinfo, injected

journey_deploy_bookinfo() {
  j_ensure_namespace "${J_APP_NS}" || return 1
  kubectl label namespace "${J_APP_NS}" nutshell.io/inject=enabled --overwrite >/dev/null || return 1
  echo "namespace ${J_APP_NS} labelled nutshell.io/inject=enabled"
  # The controller-manager makes the default ServiceAccount; pods wait for it.
  j_wait 30 kubectl -n "${J_APP_NS}" get serviceaccount default ||
    { j_err "no ServiceAccount default in ${J_APP_NS}"; return 1; }
  # Once the Canary has taken reviews over, applying the file again would put reviews back
  # at v1 (a new rollout) and the Service back on the old selector.
  if kubectl -n "${J_APP_NS}" get canary.nutshell.io "${J_CANARY}" >/dev/null 2>&1; then
    echo "Bookinfo already deployed (reviews belongs to its Canary now: not applied again)"
    return 0
  fi
  kubectl -n "${J_APP_NS}" apply -f "${J_SAMPLES}/bookinfo.yaml"
}

# What keeps the namespace from being "every Deployment rolled out, every pod Ready and
# injected"; empty when nothing does.
journey_app_problem() {
  kubectl -n "${J_APP_NS}" get deployments,pods -o json 2>/dev/null | jq -r '
    [.items[] | select(.kind == "Deployment")
      | select((.status.observedGeneration // 0) < .metadata.generation
               or (.status.readyReplicas // 0) != .spec.replicas
               or (.status.updatedReplicas // 0) != .spec.replicas
               or (.status.replicas // 0) != .spec.replicas)
      | "deployment \(.metadata.name): \(.status.readyReplicas // 0)/\(.spec.replicas) ready"]
    + [.items[] | select(.kind == "Pod" and .metadata.deletionTimestamp == null)
      | select(([.spec.containers[].name] | length != 2 or (index("nutshell-proxy") | not))
               or ([.spec.initContainers[]?.name] | index("nutshell-init") | not))
      | "pod \(.metadata.name) not injected: \([.spec.containers[].name] | join(","))"]
    + [.items[] | select(.kind == "Pod" and .metadata.deletionTimestamp == null)
      | select([.status.conditions[]? | select(.type == "Ready" and .status == "True")] | length == 0)
      | "pod \(.metadata.name) not Ready"]
    | first // empty' || echo "cannot read namespace ${J_APP_NS}"
}
j_app_ready() { [ -z "$(journey_app_problem)" ]; }

# journey_wait_app SECONDS: every Bookinfo pod 2/2 (the app and nutshell-proxy).
journey_wait_app() {
  if ! j_wait "$1" j_app_ready; then
    j_err "Bookinfo not ready after $1 s: $(journey_app_problem)"
    return 1
  fi
  echo "every pod in ${J_APP_NS} is Ready with its nutshell-proxy sidecar"
}

# --- 6. the Canary for reviews

j_canary_field() { kubectl -n "${J_APP_NS}" get canary.nutshell.io "${J_CANARY}" -o "jsonpath=$1" 2>/dev/null; }
j_image_of() {
  kubectl -n "${J_APP_NS}" get deployment "$1" -o 'jsonpath={.spec.template.spec.containers[?(@.name=="reviews")].image}' 2>/dev/null
}
j_canary_settled() { [[ "$(j_canary_field '{.status.phase}')" =~ ^(Initialized|Succeeded|Failed)$ ]]; }

# journey_apply_canary SECONDS: the sample Canary with the demo's timing, then waits for
# its initialization (reviews-primary serving).
journey_apply_canary() {
  if kubectl -n "${J_APP_NS}" get canary.nutshell.io "${J_CANARY}" >/dev/null 2>&1; then
    echo "Canary ${J_CANARY} exists (phase $(j_canary_field '{.status.phase}'))"
  else
    echo "\$ kubectl -n ${J_APP_NS} apply -f manifests/samples/bookinfo/reviews-canary.yaml" \
      "  # with interval ${J_CANARY_INTERVAL}, progressDeadlineSeconds ${J_CANARY_DEADLINE} for the demo"
    kubectl -n "${J_APP_NS}" apply --dry-run=client -o json -f "${J_SAMPLES}/reviews-canary.yaml" |
      jq --arg i "${J_CANARY_INTERVAL}" --argjson d "${J_CANARY_DEADLINE}" \
        '.spec.strategy.canary.interval = $i | .spec.progressDeadlineSeconds = $d' |
      kubectl -n "${J_APP_NS}" apply -f - || return 1
  fi
  if ! j_wait "$1" j_canary_settled; then
    j_err "Canary ${J_CANARY} not Initialized after $1 s: $(j_canary_field '{.status.phase}: {.status.message}')"
    return 1
  fi
  echo "Canary ${J_CANARY} $(j_canary_field '{.status.phase}'): reviews-primary serves, reviews scaled to 0"
}

# --- 7. shipping versions

# journey_follow_canary WANT BEFORE_REVISION SECONDS: prints `kubectl get canaries -w`'s
# lines as the phase, weight, failed checks or revision change, each with the seconds
# since the start, until the Canary reaches WANT with a revision other than
# BEFORE_REVISION (any revision when empty). 1 on time out, 2 when the rollout ended in
# the other final phase.
journey_follow_canary() {
  local want="$1" before="$2" secs="$3" fd pid line prev="" start=${SECONDS} left rc=1
  local name phase weight failed rev
  exec {fd}< <(exec timeout "${secs}" kubectl -n "${J_APP_NS}" get canary.nutshell.io "${J_CANARY}" -w 2>&1)
  pid=$!
  while left=$((start + secs - SECONDS)) && [ "${left}" -gt 0 ] && IFS= read -r -t "${left}" -u "${fd}" line; do
    read -r name phase weight failed rev _ <<<"${line}"
    if [ "${name}" = NAME ]; then
      printf '  %5s  %s\n' "" "${line}"
      continue
    fi
    # The watch repeats a line for status writes that change no column (and AGE moves).
    [ "${phase} ${weight} ${failed} ${rev}" != "${prev}" ] || continue
    prev="${phase} ${weight} ${failed} ${rev}"
    printf '  %4ss  %s\n' "$((SECONDS - start))" "${line}"
    [[ "${weight}" =~ ^[0-9]+$ ]] && [ "${weight}" -gt "${JOURNEY_MAX_WEIGHT}" ] && JOURNEY_MAX_WEIGHT="${weight}"
    [ -z "${before}" ] || [ "${rev}" != "${before}" ] || continue
    if [ "${phase}" = "${want}" ]; then
      rc=0
      break
    fi
    if [[ "${phase}" =~ ^(Succeeded|Failed)$ ]]; then
      rc=2
      break
    fi
  done
  kill "${pid}" 2>/dev/null
  exec {fd}<&-
  case "${rc}" in
  1) j_err "Canary ${J_CANARY} not ${want} after ${secs} s: $(j_canary_field '{.status.phase}: {.status.message}')" ;;
  2) j_err "Canary ${J_CANARY} ended ${phase}, not ${want}: $(j_canary_field '{.status.message}')" ;;
  esac
  return "${rc}"
}

# journey_ship IMAGE WANT SECONDS: `kubectl set image` on reviews, then follows the
# Canary until WANT (Succeeded or Failed) for that revision.
journey_ship() {
  local image="$1" want="$2" before gen
  JOURNEY_MAX_WEIGHT=0
  before="$(j_canary_field '{.status.currentRevision}')"
  gen="$(kubectl -n "${J_APP_NS}" get deployment reviews -o 'jsonpath={.metadata.generation}')"
  echo "\$ kubectl -n ${J_APP_NS} set image deployment/reviews reviews=${image}"
  kubectl -n "${J_APP_NS}" set image deployment/reviews "reviews=${image}" >/dev/null || return 1
  # The same image again (a run interrupted mid-rollout): that revision's rollout is the
  # one to follow, whatever revision the Canary shows now.
  [ "$(kubectl -n "${J_APP_NS}" get deployment reviews -o 'jsonpath={.metadata.generation}')" != "${gen}" ] || before=""
  echo "\$ kubectl -n ${J_APP_NS} get canaries -w"
  journey_follow_canary "${want}" "${before}" "$3"
}

# Whether each shipment is already done (hack/run.sh skips it then).
journey_v2_promoted() {
  [ "$(j_image_of reviews-primary)" = "${J_V2_IMAGE}" ] && [[ "$(j_canary_field '{.status.phase}')" =~ ^(Succeeded|Failed)$ ]]
}
journey_broken_rolled_back() {
  [ "$(j_image_of reviews)" = "${J_BROKEN_IMAGE}" ] && [ "$(j_canary_field '{.status.phase}')" = Failed ]
}

# --- 8. tear down

# journey_remove_canary: deletes the Canary while the operator runs, so that its
# finalizer gives reviews its replicas back. Without the operator nobody would remove the
# finalizer (and the namespace could never be deleted), so it is removed by hand.
journey_remove_canary() {
  local serving
  kubectl -n "${J_APP_NS}" get canary.nutshell.io "${J_CANARY}" >/dev/null 2>&1 || return 0
  # The operator waits for reviews' pods to be ready before it lets the Canary go (up to
  # the deadline): a broken version left in reviews would only make that wait run out.
  serving="$(j_image_of reviews-primary)"
  if [ -n "${serving}" ] && [ "$(j_image_of reviews)" != "${serving}" ]; then
    echo "\$ kubectl -n ${J_APP_NS} set image deployment/reviews reviews=${serving}   # back to what reviews-primary serves"
    kubectl -n "${J_APP_NS}" set image deployment/reviews "reviews=${serving}" >/dev/null
  fi
  if journey_operator_pid >/dev/null; then
    echo "\$ kubectl -n ${J_APP_NS} delete canary ${J_CANARY}"
    kubectl -n "${J_APP_NS}" delete canary.nutshell.io "${J_CANARY}" --timeout=120s && return 0
    echo "the operator did not finish the Canary's deletion in 120 s; removing its finalizer" >&2
  else
    echo "nutshell-operator is not running: deleting the Canary without its finalizer" >&2
  fi
  kubectl -n "${J_APP_NS}" delete canary.nutshell.io "${J_CANARY}" --wait=false --ignore-not-found >/dev/null 2>&1
  kubectl -n "${J_APP_NS}" patch canary.nutshell.io "${J_CANARY}" --type=merge \
    -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
  return 0
}

# journey_predelete_hook: does the kubelet's part for the chart's pre-delete hook Job
# (kwok completes Job pods without running them): runs the Job's own kubectl arguments
# with a token of the hook's own ServiceAccount, made from the release's hook objects. It
# deletes the Mesh and waits while the operator's finalizer removes the webhook
# configuration.
journey_predelete_hook() {
  local dir="${J_STATE}/hook" sa args
  mkdir -p "${dir}"
  "${J_HELM}" get hooks "${J_RELEASE}" -n "${J_CP_NS}" >"${dir}/hooks.yaml" || return 1
  python3 - "${dir}/hooks.yaml" "${dir}/rbac.yaml" "${dir}/job" <<'PY' || return 1
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
pre = [d for d in docs if "pre-delete" in d["metadata"].get("annotations", {}).get("helm.sh/hook", "")]
yaml.safe_dump_all([d for d in pre if d["kind"] != "Job"], open(sys.argv[2], "w"))
jobs = [d for d in pre if d["kind"] == "Job"]
with open(sys.argv[3], "w") as out:
    if jobs:
        pod = jobs[0]["spec"]["template"]["spec"]
        out.write(pod["serviceAccountName"] + "\n" + "\n".join(pod["containers"][0]["args"]) + "\n")
PY
  if [ ! -s "${dir}/job" ]; then
    echo "the release has no pre-delete hook (cleanup.enabled=false or mesh.create=false)"
    return 0
  fi
  { read -r sa && mapfile -t args; } <"${dir}/job"
  kubectl apply -f "${dir}/rbac.yaml" >/dev/null || return 1
  kubeconfig_for "${sa}" "${dir}/kubeconfig" "${J_CP_NS}" 10m || return 1
  echo "the pre-delete hook, as ServiceAccount ${J_CP_NS}/${sa}: kubectl ${args[*]}"
  if ! KUBECONFIG="${dir}/kubeconfig" timeout 180 kubectl "${args[@]}"; then
    j_err "the pre-delete hook's command failed"
    return 1
  fi
}

# journey_uninstall: the hook's part (the Mesh deleted while the operator runs), the
# operator stopped as its pod would be, `helm uninstall`, the injector stopped. The CRDs
# stay (Helm never deletes crds/), and so does the namespace J_CP_NS.
journey_uninstall() {
  local rc=0
  if [ -n "$(journey_release_status)" ]; then
    if kubectl get mesh.nutshell.io "${J_MESH}" >/dev/null 2>&1; then
      if journey_operator_pid >/dev/null; then
        journey_predelete_hook || rc=1
      else
        # Nobody would run the Mesh's finalizer: do what it does.
        echo "nutshell-operator is not running: removing the webhook configuration and the Mesh by hand" >&2
        kubectl delete mutatingwebhookconfiguration "${J_WEBHOOK}" --ignore-not-found >/dev/null
        kubectl delete mesh.nutshell.io "${J_MESH}" --wait=false >/dev/null 2>&1
        kubectl patch mesh.nutshell.io "${J_MESH}" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
      fi
    fi
    # In a cluster its pod gets SIGTERM now: it releases the Lease while its RBAC exists.
    journey_stop_operator
    echo "\$ helm uninstall ${J_RELEASE} -n ${J_CP_NS}"
    "${J_HELM}" uninstall "${J_RELEASE}" -n "${J_CP_NS}" --wait --timeout 120s || rc=1
  else
    echo "no release ${J_RELEASE} in ${J_CP_NS}"
  fi
  journey_stop_operator
  journey_stop_injector
  [ "${rc}" -ne 0 ] || rm -f "${J_STATE}/installed"
  return "${rc}"
}
