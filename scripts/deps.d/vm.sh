#!/bin/sh
# vm tests: qemu-system-x86 (for a real session libvirtd) needs qemu-utils
# and qemu-block-extra from the same Debian release; the machine may carry a
# newer backported qemu-utils, so pin them to the candidate of the release
# qemu-system-x86 comes from (--allow-downgrades). Idempotent.
set -eu
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  if [ -z "$v" ] || [ "$v" = "(none)" ]; then
    apt-get update -qq
    v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  fi
  apt-get install -y -qq --no-install-recommends --allow-downgrades \
    "qemu-system-x86=$v" "qemu-utils=$v" "qemu-block-extra=$v" >/dev/null
fi
