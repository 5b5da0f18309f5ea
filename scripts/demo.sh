#!/usr/bin/env bash
# guard's main job, end to end, on a sandbox root this script builds in a
# temporary directory (the machine's own /etc is never touched):
#   1. a mail server's root: admin-made PAM files, a package installed by the
#      real dpkg, a binary given cap_net_bind_service with setcap
#   2. guard snapshot
#   3. an upgrade-like event: dpkg upgrades the package (version 2 drops a
#      config file and replaces the binary, so the capability is lost) and the
#      admin's /etc/pam.d/imap and smtp vanish, as in the Leap 42.3 -> 15 case
#   4. guard check  (exit 2: critical findings)
#   5. guard restore --vanished, guard restore --caps
#   6. guard check  (no critical finding left)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ] && PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

need=()
command -v setcap >/dev/null || need+=(libcap2-bin)
command -v dpkg-deb >/dev/null || need+=(dpkg)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

say "building guard (core binary, no libvirt needed)"
cargo rustc --release --quiet --no-default-features --bin guard -- -C target-feature=+crt-static
GUARD=$PWD/target/release/guard

work=$(mktemp -d /tmp/guard-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
ROOT=$work/root STORE=$work/store
export GUARD_ROOT=$ROOT GUARD_STORE=$STORE

say "making a sandbox root in $ROOT"
mkdir -p "$ROOT"/etc/pam.d "$ROOT"/usr/bin "$ROOT"/var/lib/dpkg/{info,updates} "$ROOT"/var/log
touch "$ROOT"/var/lib/dpkg/status
printf 'root:x:0:0:root:/root:/bin/sh\ncyrus:x:96:12::/var/lib/imap:/bin/sh\n' > "$ROOT"/etc/passwd
printf 'root:x:0:\nmail:x:12:\n' > "$ROOT"/etc/group
printf 'NAME="Sandbox Linux"\nPRETTY_NAME="Sandbox Linux 1"\nID=sandbox\n' > "$ROOT"/etc/os-release
printf 'auth     required pam_sss.so\naccount  required pam_sss.so\n' > "$ROOT"/etc/pam.d/imap
printf 'auth     required pam_sss.so\naccount  required pam_sss.so\n' > "$ROOT"/etc/pam.d/smtp
chmod 640 "$ROOT"/etc/pam.d/smtp
printf 'sasl_pwcheck_method: saslauthd\n' > "$ROOT"/etc/imapd.conf

mkdeb() { # version, ships old.conf?
  local v=$1 d=$work/pkg-$1
  mkdir -p "$d"/DEBIAN "$d"/etc/mailgate "$d"/usr/bin
  printf 'Package: mailgate\nVersion: %s\nArchitecture: all\nMaintainer: demo <demo@example.org>\nDescription: demo mail gateway\n' "$v" > "$d"/DEBIAN/control
  printf 'listen = 25\nversion = %s\n' "$v" > "$d"/etc/mailgate/main.conf
  [ "$2" = yes ] && printf 'legacy = true\n' > "$d"/etc/mailgate/old.conf
  printf '#!/bin/sh\necho mailgate %s\n' "$v" > "$d"/usr/bin/mailgate
  chmod 755 "$d"/usr/bin/mailgate
  dpkg-deb --root-owner-group --build "$d" "$work/mailgate_$v.deb" >/dev/null
}
mkdeb 1.0 yes
mkdeb 2.0 no
dpkg_root() { dpkg --root="$ROOT" --log="$ROOT/var/log/dpkg.log" --force-not-root --force-bad-path "$@" >/dev/null; }
dpkg_root -i "$work/mailgate_1.0.deb"
setcap cap_net_bind_service=ep "$ROOT"/usr/bin/mailgate
echo "installed mailgate 1.0 with dpkg; $(getcap "$ROOT"/usr/bin/mailgate)"

say "guard snapshot --label before-upgrade"
"$GUARD" snapshot --label before-upgrade

say "the upgrade: dpkg installs mailgate 2.0, and the admin's PAM files vanish"
dpkg_root -i "$work/mailgate_2.0.deb"
rm "$ROOT"/etc/pam.d/imap "$ROOT"/etc/pam.d/smtp
echo "capability now: $(getcap "$ROOT"/usr/bin/mailgate || true) (none)"

say "guard check"
set +e; "$GUARD" check; rc=$?; set -e
echo "exit code $rc (2 = critical)"
[ "$rc" -eq 2 ] || { echo "expected exit 2" >&2; exit 1; }

say "guard restore --vanished --dry-run, then for real"
"$GUARD" restore --vanished --dry-run
"$GUARD" restore --vanished --yes
say "guard restore --caps"
"$GUARD" restore --caps --yes
echo "$(getcap "$ROOT"/usr/bin/mailgate)"
ls -l "$ROOT"/etc/pam.d

say "guard check again"
set +e; "$GUARD" check; rc=$?; set -e
echo "exit code $rc"
[ "$rc" -le 1 ] || { echo "critical findings remain" >&2; exit 1; }
say "guard list"
"$GUARD" list
say "done: the sandbox in $work is removed on exit"
