#!/usr/bin/env bash
# Writes the golden sample store snapshots/golden-vN/store, N being the
# store format version of this tree (FORMAT_VERSION), with the guard built
# from it: two snapshots of a small root that has every kind of entry (file,
# dir, symlink, fifo, a non-UTF-8 name, xattrs, an ACL, a file capability, a
# root-only file). Run once per store format version; later versions must
# keep reading what it wrote (tests/golden.rs). Never rewrite an older one.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --no-default-features --bin guard
G=$PWD/target/debug/guard
ver=$(sed -n 's/^pub const FORMAT_VERSION: u32 = \([0-9]*\);/\1/p' src/store/manifest.rs)
out=snapshots/golden-v$ver
[ ! -e "$out/store" ] || { echo "$out/store exists: golden stores are never rewritten" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
R=$work/root
mkdir -p "$R"/etc/pam.d "$R"/etc/ssh "$R"/usr/bin "$R"/etc/systemd/system/multi-user.target.wants
printf 'root:x:0:0::/root:/bin/sh\n' > "$R"/etc/passwd
printf 'root:x:0:\n' > "$R"/etc/group
printf 'NAME="Golden"\nPRETTY_NAME="Golden 1"\n' > "$R"/etc/os-release
printf 'auth required pam_sss.so\n' > "$R"/etc/pam.d/imap
printf 'PasswordAuthentication no\n' > "$R"/etc/ssh/sshd_config
printf 'root:$6$golden:19000::::::\n' > "$R"/etc/shadow; chmod 600 "$R"/etc/shadow
printf 'caf\xc3\xa9\n' > "$R"/etc/$'caf\xe9.conf'
ln -s /usr/lib/systemd/system/sshd.service "$R"/etc/systemd/system/multi-user.target.wants/sshd.service
mkfifo "$R"/etc/initctl
setfattr -n user.note -v golden "$R"/etc/pam.d/imap
setfacl -m u:root:r "$R"/etc/ssh/sshd_config
printf '#!/bin/sh\n' > "$R"/usr/bin/pinger; chmod 755 "$R"/usr/bin/pinger
setcap cap_net_raw=ep "$R"/usr/bin/pinger
touch -d '2026-01-01 00:00:00 UTC' "$R"/etc/pam.d/imap "$R"/etc/ssh/sshd_config
"$G" --root "$R" --store "$out/store" snapshot --label golden-one >/dev/null
rm "$R"/etc/pam.d/imap
printf 'PasswordAuthentication yes\n' > "$R"/etc/ssh/sshd_config
"$G" --root "$R" --store "$out/store" snapshot --kind timer --label golden-two >/dev/null
rm -rf "$out/store/tmp" "$out/store/lock"
chmod -R u+w "$out/store"
echo "wrote $out/store"
