#!/usr/bin/env bash
# Builds the control-plane tools the integration tests need, from the Go module proxy,
# into ${NUTSHELL_CACHE:-~/.cache/nutshell}/bin:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm, kwok
# Versions come from hack/versions.env. Each tool is built once per version into
# $CACHE/tools/<name>-<version>/ and symlinked into $CACHE/bin, so a second run takes
# well under a second and a version bump rebuilds only what changed.
#
# Usage: hack/tools.sh [--force] [tool...]     (tools: etcd kubernetes helm kwok)
set -euo pipefail

# shellcheck source=hack/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# Bump when the build recipe (flags, layout) changes, so caches built the old way
# are not reused.
RECIPE=1

TOOLS_DIR="${NUTSHELL_CACHE}/tools"
WORK_DIR="${NUTSHELL_CACHE}/work"

# Never let go.mod "toolchain" lines trigger a toolchain download: build with the Go
# that is installed. Static binaries (no cgo), like the upstream release builds.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod"
# Two cores: go already builds packages in parallel, so tools are built one at a time.

FORCE=0

# Prints "<dir>" for a tool at a version; ".done" inside marks a finished build.
tool_dir() { echo "${TOOLS_DIR}/$1-$2-r${RECIPE}"; }

is_built() { [ "${FORCE}" -eq 0 ] && [ -f "$(tool_dir "$1" "$2")/.done" ]; }

# Points $CACHE/bin/<binary> at the versioned build.
link_bins() {
  local dir="$1"; shift
  mkdir -p "${NUTSHELL_BIN}"
  local b
  for b in "$@"; do
    [ -x "${dir}/${b}" ] || die "${dir}/${b} missing after build"
    ln -sfn "${dir}/${b}" "${NUTSHELL_BIN}/${b}"
  done
}

# Fresh throwaway module directory for one build.
new_work_module() {
  local d="${WORK_DIR}/$1"
  rm -rf "${d}"
  mkdir -p "${d}"
  echo "${d}"
}

# Runs a chatty command (go get/install print every module they fetch) with its
# output in a log file; shows the log only when it fails.
quiet() {
  local logf="${WORK_DIR}/last.log"
  mkdir -p "${WORK_DIR}"
  if ! "$@" >"${logf}" 2>&1; then
    tail -n 40 "${logf}" >&2
    die "failed: $*"
  fi
}

# Marks a build finished and reports how long it took.
finish_build() {
  local name="$1" v="$2" start="$3"
  touch "$(tool_dir "${name}" "${v}")/.done"
  log "built ${name} ${v} in $((SECONDS - start)) s"
}

# etcd's own go.mod uses replace directives, so `go install pkg@v` refuses it. Build
# its main package (go.etcd.io/etcd/server/v3, a thin wrapper of etcdmain) from a
# throwaway module that requires it instead.
build_etcd() {
  local v="${ETCD_VERSION}" dir; dir="$(tool_dir etcd "${v}")"
  if is_built etcd "${v}"; then link_bins "${dir}" etcd; return; fi
  log "building etcd ${v} (first run takes a minute or two)..."
  local start=${SECONDS}
  local w; w="$(new_work_module etcd)"
  rm -rf "${dir}" && mkdir -p "${dir}"
  (
    cd "${w}"
    quiet go mod init nutshell.local/tools/etcd
    quiet go get "go.etcd.io/etcd/server/v3@${v}"
    go build -trimpath -ldflags "-s -w" -o "${dir}/etcd" go.etcd.io/etcd/server/v3
  )
  finish_build etcd "${v}" "${start}"
  link_bins "${dir}" etcd
}

# k8s.io/kubernetes requires its staging modules (k8s.io/api, client-go, ...) at
# v0.0.0 and replaces them with ./staging/...; those replaces do not apply to a
# dependency, so the throwaway module replaces each with its published v0.Y.Z.
build_kubernetes() {
  local v="${KUBERNETES_VERSION}" dir; dir="$(tool_dir kubernetes "${v}")"
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  if is_built kubernetes "${v}"; then link_bins "${dir}" "${bins[@]}"; return; fi
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl ${v} (first run takes about 20 minutes on 2 cores)..."
  local start=${SECONDS}
  local w; w="$(new_work_module kubernetes)"
  rm -rf "${dir}" && mkdir -p "${dir}"

  local gomod staging_v="v0.${v#v1.}"
  gomod="$(go mod download -json "k8s.io/kubernetes@${v}" | jq -r .GoMod)"
  [ -f "${gomod}" ] || die "could not download go.mod of k8s.io/kubernetes@${v}"
  local staging
  staging="$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "${gomod}")"
  [ -n "${staging}" ] || die "no ./staging replaces found in ${gomod}"

  {
    echo "module nutshell.local/tools/kubernetes"
    echo
    # Same language version and GODEBUG defaults as upstream's own main module.
    grep -E '^(go|godebug) ' "${gomod}"
    echo
    echo "require k8s.io/kubernetes ${v}"
    echo
    echo "replace ("
    local m
    for m in ${staging}; do echo "	${m} => ${m} ${staging_v}"; done
    echo ")"
  } >"${w}/go.mod"

  local minor; minor="$(k8s_minor)"
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  # Same variables as upstream hack/lib/version.sh: the server reports this version,
  # which helm's kubeVersion checks and `kubectl version` read.
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${p}.gitVersion=${v} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${minor}"
    ld+=" -X ${p}.gitTreeState=clean -X ${p}.buildDate=${date}"
  done

  local pkgs=() b
  for b in "${bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${b}"); done
  (
    cd "${w}"
    quiet go get "${pkgs[@]/%/@${v}}"
    # One invocation for all four binaries: they share most packages.
    go build -trimpath -ldflags "${ld}" -o "${dir}/" "${pkgs[@]}"
  )
  finish_build kubernetes "${v}" "${start}"
  link_bins "${dir}" "${bins[@]}"
}

build_helm() {
  local v="${HELM_VERSION}" dir; dir="$(tool_dir helm "${v}")"
  if is_built helm "${v}"; then link_bins "${dir}" helm; return; fi
  log "building helm ${v} (first run takes a few minutes)..."
  local start=${SECONDS}
  rm -rf "${dir}" && mkdir -p "${dir}"
  local minor; minor="$(k8s_minor)"
  # Version, and the Kubernetes version `helm template` assumes without a cluster
  # (set to the pinned cluster version so offline rendering matches the tests).
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=${v}"
  ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
  ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${minor}"
  ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${minor}"
  GOBIN="${dir}" GOFLAGS="" quiet go install -trimpath -ldflags "${ld}" "helm.sh/helm/v3/cmd/helm@${v}"
  finish_build helm "${v}" "${start}"
  link_bins "${dir}" helm
}

# kwok's stages (what fake nodes and pods do: become Ready, heartbeat, complete,
# delete) ship as YAML in its module, not in the binary; keep them next to it.
build_kwok() {
  local v="${KWOK_VERSION}" dir; dir="$(tool_dir kwok "${v}")"
  if is_built kwok "${v}"; then link_bins "${dir}" kwok; return; fi
  log "building kwok ${v} (first run takes a few minutes)..."
  local start=${SECONDS}
  rm -rf "${dir}" && mkdir -p "${dir}"
  local ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${v}"
  ld+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION}"
  GOBIN="${dir}" GOFLAGS="" quiet go install -trimpath -ldflags "${ld}" "sigs.k8s.io/kwok/cmd/kwok@${v}"
  local src; src="$(go mod download -json "sigs.k8s.io/kwok@${v}" | jq -r .Dir)"
  build_kwok_stages "${src}" >"${dir}/stages.yaml"
  # A kwok release that moved its stage files would otherwise give a node that never
  # becomes Ready, which is much harder to trace back here.
  [ "$(grep -c '^kind: Stage' "${dir}/stages.yaml")" -ge 5 ] \
    || die "expected 5 kwok stages in ${src}/kustomize/stage, found fewer"
  finish_build kwok "${v}" "${start}"
  link_bins "${dir}" kwok
}

# Concatenates the default stages kwokctl uses (kustomize/stage/fast: node-initialize,
# node-heartbeat-with-lease, pod-ready, pod-complete, pod-delete) into one
# multi-document YAML that `kwok --config` accepts. The lease heartbeat keeps the
# node-lifecycle controller from marking fake nodes NotReady and evicting pods.
# Only kwok's own stages belong here: ours (hack/kwok/) are layered on top by
# hack/kwok/stages.sh each time hack/cluster.sh starts kwok, so changing them needs no
# rebuild.
build_kwok_stages() {
  local src="$1" f
  for f in "${src}"/kustomize/stage/node/fast/*.yaml \
           "${src}"/kustomize/stage/node/heartbeat-with-lease/*.yaml \
           "${src}"/kustomize/stage/pod/fast/*.yaml; do
    [ "$(basename "${f}")" = kustomization.yaml ] && continue
    echo "---"
    cat "${f}"
  done
}

main() {
  local want=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --force) FORCE=1 ;;
      -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
      etcd|kubernetes|helm|kwok) want+=("$1") ;;
      *) die "unknown argument: $1" ;;
    esac
    shift
  done
  [ ${#want[@]} -gt 0 ] || want=(etcd kubernetes helm kwok)

  # The official tarball's location, for shells whose PATH does not include it yet.
  command -v go >/dev/null || PATH="${PATH}:/usr/local/go/bin"
  command -v go >/dev/null || die "go not found in PATH (need Go >= 1.26)"
  command -v jq >/dev/null || die "jq not found (run hack/deps.sh)"
  mkdir -p "${TOOLS_DIR}" "${NUTSHELL_BIN}"
  # Parallel CI jobs or `cluster.sh up` racing a manual run: build each tool once.
  exec 8>"${NUTSHELL_CACHE}/.tools.lock"
  flock 8

  local t
  for t in "${want[@]}"; do "build_${t}"; done
  log "tools ready in ${NUTSHELL_BIN}"
}

main "$@"
