#!/usr/bin/env bash
# Checks that a test run left nothing running: `scripts/leftovers.sh [-r RUN]
# [DIR...]`. Leftovers are
#  - processes running in, or started with -D on, a directory under a DIR
#    (a PostgreSQL server of the tests: the postmaster and its children run
#    in the server's data directory, even once it has been removed), and
#  - with -r RUN, every process whose environment has
#    AGENT_SESSION_TEST_RUN=RUN (what the tests started: the host, test
#    binaries, node, python), other than this script and its own
#    subshells; without it, processes whose executable is under this
#    repository's target/.
# Any leftover is listed, ended (SIGTERM, then SIGKILL) and makes the exit
# status 1. Only /proc is read: a pattern given to pgrep -f could match this
# script's own command line, which holds the same directories.
set -euo pipefail
cd "$(dirname "$0")/.."

run=""
if [ "${1:-}" = -r ]; then
  run=$2
  shift 2
fi
target="$(pwd -P)/target/"
dirs=()
for d in "$@"; do
  # An empty DIR (no server was started) would match every directory.
  [ -n "$d" ] && dirs+=("$(realpath -m "$d")")
done

# Whether path $1 is directory $2 or under it.
under() { [ "$1" = "$2" ] || [[ "$1" == "$2"/* ]]; }

# Whether process $1 is this script, one of its subshells (which carry the
# run's mark too), or the shell that runs it (the test script).
mine() {
  local p=$1 stat fields
  [ "$p" = "$PPID" ] && return 0
  while [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != 1 ]; do
    [ "$p" = $$ ] && return 0
    read -r stat 2>/dev/null <"/proc/$p/stat" || return 1
    # The parent's pid is the second field after the command's ")".
    read -ra fields <<<"${stat##*) }"
    p=${fields[1]:-}
  done
  return 1
}

# Whether process $1 is a leftover (see above).
leftover() {
  local p=$1 cwd exe d i args=()
  if mine "$p"; then return 1; fi
  if [ ${#dirs[@]} != 0 ]; then
    cwd=$(readlink "/proc/$p/cwd" 2>/dev/null) || cwd=""
    cwd=${cwd% (deleted)}
    mapfile -t -d '' args 2>/dev/null <"/proc/$p/cmdline" || true
    for d in "${dirs[@]}"; do
      if [ -n "$cwd" ] && under "$cwd" "$d"; then return 0; fi
      # -D DIR on the command line: a server that has not yet changed into
      # its data directory.
      for ((i = 1; i < ${#args[@]}; i++)); do
        if [ "${args[i - 1]}" = -D ] && under "$(realpath -m "${args[i]}")" "$d"; then return 0; fi
      done
    done
  fi
  if [ -n "$run" ]; then
    # One grep over the NUL-separated environment: no pipeline whose
    # writer could die of SIGPIPE and turn a match into a miss.
    grep -qzxF "AGENT_SESSION_TEST_RUN=$run" "/proc/$p/environ" 2>/dev/null
    return
  fi
  exe=$(readlink "/proc/$p/exe" 2>/dev/null) || return 1
  [[ "${exe% (deleted)}" == "$target"* ]]
}

find_leftovers() {
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    if leftover "$p"; then echo "$p"; fi
  done
}

mapfile -t pids < <(find_leftovers)
[ ${#pids[@]} = 0 ] && exit 0

echo "error: the tests left these processes running; ending them:" >&2
ps -o pid=,user=,args= -p "$(IFS=,; echo "${pids[*]}")" >&2 || true
kill -TERM "${pids[@]}" 2>/dev/null || true
for _ in $(seq 50); do
  mapfile -t pids < <(find_leftovers)
  [ ${#pids[@]} = 0 ] && break
  sleep 0.1
done
if [ ${#pids[@]} != 0 ]; then
  kill -KILL "${pids[@]}" 2>/dev/null || true
fi
exit 1
