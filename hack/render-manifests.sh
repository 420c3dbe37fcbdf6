#!/usr/bin/env bash
# Renders the Helm chart (charts/nutshell) with its default values into plain YAML for
# `kubectl apply` users, and keeps the chart's CRDs identical to manifests/crds/ (the one
# place the CRDs are edited):
#
#   manifests/crds/*.yaml  --copied to-->  charts/nutshell/crds/  and  manifests/install/crds/
#   charts/nutshell        --rendered-->   manifests/install/nutshell.yaml
#
#   hack/render-manifests.sh           write them
#   hack/render-manifests.sh --check   change nothing; exit 1 (with a diff) when any of
#                                      them is out of date, or when the chart's
#                                      appVersion is not the project's version
#
# The rendering has no hooks (`--no-hooks`): the chart's pre-delete hook would delete the
# Mesh the moment kubectl applied it. It uses the helm of hack/versions.env
# (hack/tools.sh builds it) so that the output does not depend on whichever helm is on
# PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib/common.sh
source hack/lib/common.sh

CHART=charts/nutshell
RELEASE=nutshell
NAMESPACE=nutshell-system

mode="write"
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  -h | --help)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument $1 (usage: $0 [--check])" ;;
esac

HELM="${NUTSHELL_BIN}/helm"
[ -x "${HELM}" ] || HELM="$(command -v helm || true)"
[ -n "${HELM}" ] || die "helm not found: run hack/tools.sh (it builds helm ${HELM_VERSION})"
have="$("${HELM}" version --template '{{.Version}}')"
[ "${have}" = "${HELM_VERSION}" ] ||
  die "${HELM} is helm ${have}, hack/versions.env pins ${HELM_VERSION}: run hack/tools.sh"

# The chart's appVersion is the project's version: it is the images' default tag.
project_version="$(sed -nE 's/^project\(nutshell VERSION ([0-9][0-9A-Za-z.+-]*).*/\1/p' CMakeLists.txt)"
app_version="$(sed -nE 's/^appVersion: *"?([^"]*)"?$/\1/p' "${CHART}/Chart.yaml")"
[ -n "${project_version}" ] || die "no project VERSION in CMakeLists.txt"
if [ "${app_version}" != "${project_version}" ]; then
  die "${CHART}/Chart.yaml appVersion is \"${app_version}\" but CMakeLists.txt says ${project_version}: set appVersion: \"${project_version}\" (and bump the chart's version)"
fi

OUT="$(mktemp -d)"
trap 'rm -rf "${OUT}"' EXIT
mkdir -p "${OUT}/chart-crds" "${OUT}/install/crds"

# CRDs: verbatim copies.
shopt -s nullglob
crds=(manifests/crds/*.yaml)
[ ${#crds[@]} -gt 0 ] || die "no CRDs in manifests/crds/"
for f in "${crds[@]}"; do
  cp "${f}" "${OUT}/chart-crds/"
  cp "${f}" "${OUT}/install/crds/"
done

# The chart must render from the CRDs it is about to get, so render from a copy whose
# crds/ is already the new one.
cp -r "${CHART}" "${OUT}/chart"
rm -rf "${OUT}/chart/crds"
cp -r "${OUT}/chart-crds" "${OUT}/chart/crds"
{
  cat <<EOF
# Nutshell ${app_version}: the Helm chart ${CHART} rendered with its default values
# (release "${RELEASE}", namespace ${NAMESPACE}) by hack/render-manifests.sh. Do not edit:
# change the chart and run the script. For users without Helm:
#
#   kubectl apply --server-side -f manifests/install/crds/
#   kubectl wait --for condition=Established crd/meshes.nutshell.io crd/canaries.nutshell.io
#   kubectl apply -f manifests/install/nutshell.yaml
#
# To remove it, delete the Mesh first, while the operator still runs (its finalizer
# removes the webhook configuration), then the rest:
#
#   kubectl delete mesh default --wait
#   kubectl delete -f manifests/install/nutshell.yaml
#   kubectl delete -f manifests/install/crds/      # also deletes every Mesh and Canary
---
apiVersion: v1
kind: Namespace
metadata:
  name: ${NAMESPACE}
  labels:
    app.kubernetes.io/name: nutshell
    app.kubernetes.io/part-of: nutshell
EOF
  "${HELM}" template "${RELEASE}" "${OUT}/chart" --namespace "${NAMESPACE}" --no-hooks
} >"${OUT}/install/nutshell.yaml"

if [ "${mode}" = write ]; then
  rm -rf "${CHART}/crds" manifests/install
  mkdir -p manifests/install
  cp -r "${OUT}/chart-crds" "${CHART}/crds"
  cp -r "${OUT}/install/." manifests/install/
  echo "render-manifests: wrote ${CHART}/crds/, manifests/install/ (helm ${have})"
  exit 0
fi

rc=0
# diff -r also reports files present on one side only (a CRD added or removed).
if ! diff -ru "${OUT}/chart-crds" "${CHART}/crds" >"${OUT}/crds.diff" 2>&1; then
  echo "render-manifests: ${CHART}/crds/ differs from manifests/crds/:" >&2
  head -40 "${OUT}/crds.diff" >&2
  rc=1
fi
if ! diff -ru "${OUT}/install" manifests/install >"${OUT}/install.diff" 2>&1; then
  echo "render-manifests: manifests/install/ is not what the chart renders:" >&2
  head -60 "${OUT}/install.diff" >&2
  rc=1
fi
if [ "${rc}" -ne 0 ]; then
  echo "render-manifests: out of date; run hack/render-manifests.sh" >&2
  exit 1
fi
echo "render-manifests: in sync (helm ${have})"
