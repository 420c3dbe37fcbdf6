#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls this):
#   1. installs the Debian packages (hack/deps.sh) and builds the pinned Kubernetes
#      tools into ~/.cache/nutshell (hack/tools.sh; minutes the first time, seconds after);
#   2. builds Nutshell twice: normal, and with AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. starts the local control plane (hack/cluster.sh) unless one is up;
#   4. runs every suite with ctest: unit, integration (real kube-apiserver), netns (root);
#   5. runs the unit suites again under the sanitizers, and each fuzz target briefly;
#   6. checks style (hack/lint.sh);
#   7. prints one closing line "N passed, M failed, K skipped" and exits non-zero on failure.
# Environment: NUTSHELL_FUZZ_SECONDS (default 20 per target), NUTSHELL_SKIP_TOOLS=1 to
# skip the Kubernetes tools (integration suites then skip themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
JOBS="$(nproc)"

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
bash hack/deps.sh
if [ "${NUTSHELL_SKIP_TOOLS:-0}" != 1 ]; then
  step "Kubernetes tools (cached in ~/.cache/nutshell)"
  bash hack/tools.sh
fi

step "build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"${JOBS}"
step "build with ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNUTSHELL_SANITIZE=ON >/dev/null
cmake --build build-asan -j"${JOBS}"
step "build fuzz targets (clang, libFuzzer)"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DNUTSHELL_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"${JOBS}" --target fuzz_admission fuzz_yaml fuzz_http1 fuzz_routes \
  fuzz_discovery fuzz_kubeconfig

started_cluster=0
cleanup() {
  if [ "${started_cluster}" = 1 ]; then
    step "stopping the local control plane"
    hack/cluster.sh down || true
  fi
}
trap cleanup EXIT
if [ "${NUTSHELL_SKIP_TOOLS:-0}" != 1 ] && ! hack/cluster.sh status >/dev/null 2>&1; then
  step "starting the local control plane"
  hack/cluster.sh up
  started_cluster=1
fi
if [ "${NUTSHELL_SKIP_TOOLS:-0}" != 1 ]; then
  eval "$(hack/cluster.sh env)" # KUBECONFIG and PATH for the suites below
fi

passed=0 failed=0 skipped=0
# ctest's summary: "100% tests passed, 0 tests failed out of 9" and a list of skips.
tally() {
  local log="$1" total nfail nskip
  total="$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "${log}" | tail -1)"
  nfail="$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "${log}" | tail -1)"
  nskip="$(grep -c '(Skipped)' "${log}" || true)"
  total="${total:-0}" nfail="${nfail:-0}"
  passed=$((passed + total - nfail - nskip))
  failed=$((failed + nfail))
  skipped=$((skipped + nskip))
}

rc=0
step "all suites (unit, integration, netns)"
ctest --test-dir build --output-on-failure -j1 2>&1 | tee build/ctest.log || rc=1
tally build/ctest.log
step "unit suites under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -R '^unit_' 2>&1 | tee build-asan/ctest.log || rc=1
tally build-asan/ctest.log

step "fuzz smoke (${NUTSHELL_FUZZ_SECONDS:-20} s per target)"
for target in admission yaml http1 routes discovery kubeconfig; do
  corpus="$(mktemp -d)"
  cp -r "tests/fuzz/corpus/${target}/." "${corpus}/"
  if build-fuzz/tests/fuzz/fuzz_${target} -max_total_time="${NUTSHELL_FUZZ_SECONDS:-20}" \
    -max_len=65536 -print_final_stats=0 "${corpus}" >build-fuzz/fuzz_${target}.log 2>&1; then
    echo "PASS: fuzz_${target} ($(grep -o 'Done [0-9]* runs' build-fuzz/fuzz_${target}.log || echo done))"
    passed=$((passed + 1))
  else
    echo "FAIL: fuzz_${target}: see build-fuzz/fuzz_${target}.log"
    tail -30 build-fuzz/fuzz_${target}.log
    failed=$((failed + 1))
    rc=1
  fi
  rm -rf "${corpus}"
done

step "lint (banned functions, clang-format)"
if bash hack/lint.sh; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
  rc=1
fi

echo
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
exit "${rc}"
