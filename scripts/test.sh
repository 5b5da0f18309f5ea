#!/usr/bin/env bash
# Runs the whole test suite the way CI does: installs the Debian packages the
# tests use (real pacman, rpm, dpkg, sshd, setcap, cryptsetup, libvirt …, one
# list per area in scripts/deps.d/), then fmt, clippy and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# rustup's cargo, even where the caller's PATH lacks it (CI, sudo)
[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ] && PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

export DEBIAN_FRONTEND=noninteractive
need=()
for p in $(sed 's/#.*//' scripts/deps.d/*.txt); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages (run as root to install): ${need[*]}" >&2
    exit 1
  fi
  echo "== installing: ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for hook in scripts/deps.d/*.sh; do
  [ -e "$hook" ] && bash "$hook"
done

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== the installed build: guard static, without libvirt (scripts/build.sh)"
bash scripts/build.sh --debug
target/debug/guard --version
echo "== tests"
cargo test --all-targets -- --test-threads="${GUARD_TEST_THREADS:-2}"
