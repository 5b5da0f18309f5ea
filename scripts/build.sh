#!/usr/bin/env bash
# Builds what the README installs:
#  * guard, statically linked (glibc included): it runs on a system whose
#    glibc is older than the build machine's (the Leap 42.3 of incident 1),
#    and it still starts when an upgrade left the shared libraries half
#    replaced, which is when it is needed; it also starts ~0.5 ms sooner,
#    which a timer snapshot of ~10 ms notices. guard resolves no user
#    through NSS (it reads the root's own passwd), so nothing in it needs
#    glibc's dlopen at run time.
#  * guard-vm, which links the system's libvirt dynamically (libvirt has no
#    static build), when libvirt-dev is installed.
#   scripts/build.sh [--debug]     (default: release, into target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ] && PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
profile=(--release)
dir=target/release
if [ "${1:-}" = --debug ]; then profile=(); dir=target/debug; fi
# -C target-feature=+crt-static for this binary alone: in RUSTFLAGS it
# would reach guard-vm too, which cannot link libvirt statically.
cargo rustc "${profile[@]}" --quiet --no-default-features --bin guard -- -C target-feature=+crt-static
if ! ldd "$dir/guard" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
  echo "scripts/build.sh: $dir/guard is not statically linked" >&2
  exit 1
fi
if pkg-config --exists libvirt 2>/dev/null; then
  cargo build "${profile[@]}" --quiet --bin guard-vm
else
  echo "scripts/build.sh: libvirt-dev not installed: guard-vm not built (guard vm and snapshot --vm need it)" >&2
fi
