#!/usr/bin/env bash
# Removes what killed test runs left behind: the test hosts' network
# namespaces (ke-<pid>-<block>) and root-side links (ke-<block>, ifalias
# ke-pid-<pid>), and the scratch directories of test hosts and control planes
# (/dev/shm/ke-host-<pid>-<n>, /dev/shm/ke-cp-<pid>-<n>, including those kept
# for their logs after a failure). Only things whose process no longer exists
# are touched, so it is safe while tests run. The test kit does the same
# (except for kept logs) on its first use in a process.
# Usage: sudo scripts/cleanup-testhosts.sh [--dry-run]
set -euo pipefail

dry_run=false
case "${1:-}" in
  --dry-run) dry_run=true ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "$0: needs root (network namespaces)" >&2
  exit 1
fi

do_run() {
  echo "+ $*"
  if ! $dry_run; then "$@" || echo "  (failed, continuing)" >&2; fi
}

alive() { [ -d "/proc/$1" ]; }

removed=0

# Namespaces: ke-<pid>-<block>.
while read -r ns _; do
  [[ "$ns" =~ ^ke-([0-9]+)-([0-9]+)$ ]] || continue
  alive "${BASH_REMATCH[1]}" && continue
  for pid in $(ip netns pids "$ns" 2>/dev/null); do
    do_run kill -KILL "$pid"
  done
  do_run ip netns del "$ns"
  removed=$((removed + 1))
done < <(ip netns list 2>/dev/null)

# Root-side links: ke-<block>, owner in the ifalias "ke-pid-<pid>".
while read -r line; do
  name=$(awk -F': ' '{print $2}' <<<"$line" | cut -d@ -f1)
  [[ "$name" == ke-* ]] || continue
  [[ "$line" =~ alias\ ke-pid-([0-9]+) ]] || continue
  alive "${BASH_REMATCH[1]}" && continue
  do_run ip link del "$name"
  removed=$((removed + 1))
done < <(ip -o link show 2>/dev/null)

# Scratch directories: ke-host-<pid>-<n>, ke-cp-<pid>-<n>.
for base in /dev/shm "${TMPDIR:-/tmp}"; do
  for dir in "$base"/ke-host-* "$base"/ke-cp-*; do
    [ -d "$dir" ] || continue
    [[ "$(basename "$dir")" =~ ^ke-(host|cp)-([0-9]+)-[0-9]+$ ]] || continue
    alive "${BASH_REMATCH[2]}" && continue
    do_run rm -rf "$dir"
    removed=$((removed + 1))
  done
done

echo "removed $removed stale item(s)$($dry_run && echo ' (dry run: nothing done)')"
