# shellcheck shell=bash
# A progress display for the long steps of hack/run.sh (the first tools build takes
# about 35 minutes). Sourced, not executed.
#
# with_progress LOG KEEP COMMAND...
#   Runs COMMAND with its output in LOG (stdin closed). While it runs, on a terminal one
#   line is redrawn twice a second: a spinner, the elapsed time and COMMAND's latest
#   output line; elsewhere (CI, a pipe) that line is printed every 30 s. Output lines
#   matching the extended regex KEEP (empty: none) are printed as they come, so that the
#   milestones stay on screen. On success prints the time taken; on failure the log's
#   last 40 lines. Returns COMMAND's status.

# The elapsed seconds as m:ss.
progress_clock() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

# progress_flush: prints the KEEP lines that arrived in LOG since the last call (with
# with_progress's variables: log, keep, shown, tty).
progress_flush() {
  local n
  n="$(wc -l <"${log}")"
  if [ -n "${keep}" ] && [ "${n}" -gt "${shown}" ]; then
    [ -z "${tty}" ] || printf '\r\033[K'
    sed -n "$((shown + 1)),${n}p" "${log}" | grep -E -- "${keep}" | sed 's/^/    /'
  fi
  shown="${n}"
}

with_progress() {
  local log="$1" keep="$2" pid rc=0 start=${SECONDS} shown=0 i=0 tty="" cols=80 next=30 last
  local frames="|/-\\"
  shift 2
  [ -t 1 ] && tty=1 && cols="$(tput cols 2>/dev/null || echo 80)"
  : >"${log}"
  "$@" >"${log}" 2>&1 </dev/null &
  pid=$!
  while kill -0 "${pid}" 2>/dev/null; do
    progress_flush
    last="$(tail -n 1 "${log}" | tr -d '\r' | cut -c1-$((cols - 16)))"
    if [ -n "${tty}" ]; then
      printf '\r\033[K  %s %s  %s' "${frames:i++%4:1}" "$(progress_clock $((SECONDS - start)))" "${last}"
    elif [ $((SECONDS - start)) -ge "${next}" ]; then
      echo "  ... $(progress_clock $((SECONDS - start))) ${last}"
      next=$((next + 30))
    fi
    sleep 0.5
  done
  wait "${pid}" || rc=$?
  progress_flush
  [ -z "${tty}" ] || printf '\r\033[K'
  if [ "${rc}" -eq 0 ]; then
    echo "  done in $(progress_clock $((SECONDS - start)))"
  else
    echo "  failed after $(progress_clock $((SECONDS - start))) (exit ${rc}); the last lines of ${log}:" >&2
    tail -n 40 "${log}" >&2
  fi
  return "${rc}"
}
