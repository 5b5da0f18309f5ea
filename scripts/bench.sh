#!/usr/bin/env bash
# Benchmarks guard against the tools an admin would otherwise use, on this
# machine's real /etc and /usr, in one run, warm cache, as ratios to the
# anchor (tar -cf - /etc | zstd). Reads the host's /etc and /usr; writes only
# to a temporary directory. Not a test: numbers go into the README.
#   scripts/bench.sh [RUNS]      (default 7 runs each, median)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ] && PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
RUNS=${1:-7}
for t in zstd getcap git; do command -v $t >/dev/null || { echo "bench needs $t" >&2; exit 1; }; done
# the binary the README installs (static; scripts/build.sh)
bash scripts/build.sh
G=$PWD/target/release/guard
W=$(mktemp -d /tmp/guard-bench.XXXXXX); trap 'rm -rf "$W"' EXIT

# median wall time in ms of running "$@" RUNS times.
# Timed with bash's own clock ($EPOCHREALTIME, microseconds): timing with
# $(date) would add the cost of two forks to every figure and so pull all
# ratios towards 1.
median() {
  local ts=()
  for _ in $(seq "$RUNS"); do
    local a b; a=${EPOCHREALTIME/./}; "$@" >/dev/null 2>&1 || true; b=${EPOCHREALTIME/./}
    ts+=($(( b - a )))
  done
  printf '%s\n' "${ts[@]}" | sort -n | awk '{v[NR]=$1} END {printf "%.1f", v[int((NR+1)/2)]/1000}'
}
# median of one GUARD_TIMINGS phase
phase() {
  local name=$1; shift; local ts=()
  for _ in $(seq "$RUNS"); do
    ts+=($(GUARD_TIMINGS=1 "$@" 2>&1 >/dev/null | awk -v n="$name" '$0 ~ "timing: "n {print $(NF-1)}'))
  done
  printf '%s\n' "${ts[@]}" | sort -n | awk '{v[NR]=$1} END {printf "%.1f", v[int((NR+1)/2)]}'
}
tarzstd() { tar -cf - /etc 2>/dev/null | zstd -q -c > "$W/etc.tar.zst"; }
# Every run of the two cold figures writes into a directory of its own and
# nothing is deleted until the end: on ext4 without a journal (this
# machine's), allocating an inode skips every free inode of its group that
# was freed less than 5 s ago (300 s while its inode table block is still
# dirty; ialloc.c, recently_deleted()), so removing the last run's ~750
# files just before the next would bill that scan to the run being timed
# (up to twice guard's cold time here). A first snapshot does not follow a
# mass deletion beside its store.
n=0
etckeeper() { n=$((n + 1)); local g="$W/git.$n"; git init -q "$g" && git --git-dir="$g/.git" --work-tree=/etc add -A && git --git-dir="$g/.git" --work-tree=/etc -c user.name=b -c user.email=b@b commit -qm snapshot; }
cold_snapshot() { n=$((n + 1)); "$G" --root / --store "$W/cold.$n" snapshot; }
getcap_usr() { getcap -r /usr; }

# warm the page cache
tarzstd; getcap_usr >/dev/null 2>&1; "$G" --root / --store "$W/warm" snapshot >/dev/null 2>&1

# The anchor and the steady-state figures (timer snapshot, check) are
# timed in turns, round after round, after the cold runs have settled:
# timed one after the other, the first of them ran while the disk still
# wrote back the cold runs' ~200 MB (git's objects, the cold stores), and
# a timer snapshot, which syncs its manifest, paid for that wait (17 ms
# falling to 10 over ten runs here) while tar, which syncs nothing, did not.
interleaved() { # NAME=CMD… : median of each, RUNS rounds of one run each
  local -A ts=(); local r spec name
  for r in $(seq "$RUNS"); do
    for spec in "$@"; do
      name=${spec%%=*}
      local a b; a=${EPOCHREALTIME/./}; eval "${spec#*=}" >/dev/null 2>&1 || true; b=${EPOCHREALTIME/./}
      ts[$name]+="$(( b - a )) "
    done
  done
  for spec in "$@"; do
    name=${spec%%=*}
    printf '%s=%s\n' "$name" "$(printf '%s\n' ${ts[$name]} | sort -n | awk '{v[NR]=$1} END {printf "%.1f", v[int((NR+1)/2)]/1000}')"
  done
}
git_ms=$(median etckeeper)
cold=$(median cold_snapshot)
"$G" --root / --store "$W/re" snapshot >/dev/null 2>&1
# Timer snapshots come minutes to hours apart, so in steady state the
# store's directories are older than the snapshot before the cached one;
# a snapshot only trusts fan-out dirs that old (FORMAT.md, Durability).
sync
sleep 3
"$G" --root / --store "$W/re" snapshot --kind timer >/dev/null 2>&1
eval "$(interleaved anchor=tarzstd \
  re='"$G" --root / --store "$W/re" snapshot --kind timer' \
  chk='"$G" --root / --store "$W/re" check')"
re_manual=$(median "$G" --root / --store "$W/re" snapshot --kind manual)
before=$(find "$W/re/objects" -type f | wc -l)
"$G" --root / --store "$W/re" snapshot --kind timer >/dev/null 2>&1
after=$(find "$W/re/objects" -type f | wc -l)
getcap_ms=$(median getcap_usr)
ledger=$(phase "caps ledger" "$G" --root / --store "$W/re" snapshot --kind manual)
"$G" --root / --store "$W/re" prune --keep 1 --yes >/dev/null 2>&1 || true

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
files=$(find /etc 2>/dev/null | wc -l); usr=$(find /usr -type f 2>/dev/null | wc -l)
cat <<TXT
guard benchmark: $(nproc) cores, /etc $files entries ($(du -sh /etc 2>/dev/null | cut -f1)), /usr $usr files, median of $RUNS, warm cache
| what | ms | ratio | target |
|---|---:|---:|---:|
| tar -cf - /etc \| zstd (anchor) | $anchor | 1.00 | |
| git add -A && git commit of /etc, fresh repo (etckeeper) | $git_ms | $(ratio "$git_ms" "$anchor") | |
| guard snapshot, cold store | $cold | $(ratio "$cold" "$anchor") | ≤ 1.0 |
| guard snapshot --kind timer, unchanged tree (ledger carried forward) | $re | $(ratio "$re" "$anchor") | ≤ 0.5 |
| guard snapshot (manual), unchanged tree (ledger walked) | $re_manual | $(ratio "$re_manual" "$anchor") | |
| guard check, unchanged tree | $chk | $(ratio "$chk" "$anchor") | ≤ 0.5 |
| getcap -r /usr (anchor for the ledger) | $getcap_ms | 1.00 | |
| guard capability ledger of /usr (phase) | $ledger | $(ratio "$ledger" "$getcap_ms") | ≤ 0.5 |
unchanged re-snapshot added $((after - before)) objects (must be 0)
profile of one unchanged manual re-snapshot (GUARD_TIMINGS=1):
$(GUARD_TIMINGS=1 "$G" --root / --store "$W/re" snapshot 2>&1 >/dev/null | grep timing)
TXT
# the guest clone benchmark needs the libvirt helper
if pkg-config --exists libvirt 2>/dev/null; then
  bash scripts/bench-vm.sh
else
  echo "(clone benchmark skipped: libvirt-dev not installed)"
fi
