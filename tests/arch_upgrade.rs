//! End-to-end: the `pacman -Syu` of a long-neglected Arch box, with the
//! REAL tools. Eight packages built by `makepkg` (as `nobody`: makepkg
//! refuses root), published with `repo-add` in a `file://` repo inside the
//! root, installed and upgraded in one transaction by `pacman --sysroot`
//! (which chroots, so the root carries a `/bin/sh` and `rm` for the
//! scriptlets and, for the hooks, guard itself).
//!
//! The admin's state before the upgrade: edited `backup=()` files
//! (`system-auth`, `sshd_config`, the mirrorlist, oldsync's config), their
//! own `/etc/pam.d/imap` that dovecot's `passdb { driver = pam }` uses, an
//! `sshd_config.d/` drop-in, `setcap cap_net_bind_service=ep` on
//! `/usr/bin/mailgate`, `mailgate.service` enabled with a hardening
//! override. The upgrade writes three `.pacnew`, replaces oldsync by newsync
//! (`replaces=`: the edited config becomes `.pacsave`), renames
//! `mailgate.service` to `mailgated.service` (the admin's link dangles, the
//! override applies to nothing; it adds another service too) and replaces
//! the capped binary; openssh ships a drop-in with `PasswordAuthentication yes` and stops shipping
//! `/etc/ssh/moduli`; dovecot's `post_upgrade` removes `/etc/pam.d/imap`.
//!
//! What the admin must notice: exactly the three real critical findings,
//! in order, with their fixes; the warnings with the damage before the
//! merges waiting; a restore plan marking what the packages dropped; the
//! admin's files back byte-exact; and the same from the alpm hooks.

#[path = "common/pkg_helpers.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use common::*;
use guard::exec::{self, Cmd};
use serde_json::{json, Value};

/// makepkg runs as `nobody` so the test adds no account to the host.
const NOBODY: u32 = 65534;
const ALL_V1: &[&str] = &[
    "filesystem",
    "pam",
    "openssh",
    "dovecot",
    "mailgate",
    "oldsync",
    "pacman-mirrorlist",
    "which",
];

/// Split packages at 1.0: what the box was installed with.
const PKGBUILD_V1: &str = r#"pkgbase=guardtest-base
pkgname=(filesystem pam openssh dovecot mailgate oldsync pacman-mirrorlist which)
pkgver=1.0
pkgrel=1
arch=(any)
license=(MIT)
pkgdesc='guard test package'

f() { install -Dm${3:-644} /dev/stdin "$pkgdir/$1" <<<"$2"; }

package_filesystem() {
  backup=(etc/passwd etc/group etc/shells etc/shadow)
  f etc/passwd 'root:x:0:0::/root:/bin/bash
bin:x:1:1::/:/usr/bin/nologin'
  f etc/group 'root:x:0:root
bin:x:1:root,bin,daemon
mail:x:12:'
  f etc/shadow 'root:*:14871::::::' 600
  f etc/shells '/bin/sh
/bin/bash'
}
package_pam() {
  backup=(etc/pam.d/system-auth etc/pam.d/system-login etc/pam.d/system-remote-login etc/pam.d/login etc/pam.d/other)
  f etc/pam.d/system-auth 'auth       required                    pam_faillock.so      preauth
auth       [success=1 default=bad]     pam_unix.so          try_first_pass nullok
auth       [default=die]               pam_faillock.so      authfail
auth       required                    pam_env.so
account    required                    pam_unix.so
password   required                    pam_unix.so          try_first_pass nullok shadow
session    required                    pam_unix.so'
  f etc/pam.d/system-login 'auth       include    system-auth
account    include    system-auth
session    include    system-auth'
  f etc/pam.d/system-remote-login 'auth      include   system-login
account   include   system-login
session   include   system-login'
  f etc/pam.d/login 'auth       requisite    pam_nologin.so
auth       include      system-login
account    include      system-login
session    include      system-login'
  f etc/pam.d/other 'auth      required   pam_deny.so
account   required   pam_deny.so
session   required   pam_deny.so'
  for m in unix deny permit env faillock nologin; do f usr/lib/security/pam_$m.so "ELF pam_$m" 755; done
}
package_openssh() {
  backup=(etc/ssh/sshd_config etc/pam.d/sshd)
  f etc/ssh/sshd_config 'Include /etc/ssh/sshd_config.d/*.conf
#Port 22
#PermitRootLogin prohibit-password
#PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM yes
Subsystem sftp /usr/lib/ssh/sftp-server'
  f etc/ssh/moduli '# Time Type Tests Tries Size Generator Modulus
20230101000000 2 6 100 2047 2 C0FFEE'
  f etc/pam.d/sshd 'auth      include   system-remote-login
account   include   system-remote-login'
  f usr/lib/systemd/system/sshd.service '[Unit]
Description=OpenSSH Daemon
[Service]
ExecStart=/usr/bin/sshd -D
[Install]
WantedBy=multi-user.target'
  f usr/bin/sshd 'sshd 9.7' 755
}
package_dovecot() {
  backup=(etc/pam.d/dovecot)
  f etc/pam.d/dovecot 'auth    include system-auth
account include system-auth'
  f usr/lib/systemd/system/dovecot.service '[Unit]
Description=Dovecot IMAP/POP3 email server
[Service]
ExecStart=/usr/bin/dovecot -F
[Install]
WantedBy=multi-user.target'
  f usr/bin/dovecot 'dovecot 2.3' 755
}
package_mailgate() {
  backup=(etc/mailgate.conf)
  f etc/mailgate.conf 'listen = 0.0.0.0:25'
  f usr/bin/mailgate 'mailgate 1.0' 755
  f usr/lib/systemd/system/mailgate.service '[Unit]
Description=mail gateway
[Service]
ExecStart=/usr/bin/mailgate --foreground
[Install]
WantedBy=multi-user.target'
}
package_oldsync() {
  backup=(etc/oldsync.conf)
  f etc/oldsync.conf '# oldsync settings
interval = 3600'
  f usr/bin/oldsync 'oldsync 1.0' 755
}
package_pacman-mirrorlist() {
  backup=(etc/pacman.d/mirrorlist)
  f etc/pacman.d/mirrorlist '## Arch Linux repository mirrorlist
## Generated on 2023-01-01
#Server = https://mirror.example.org/archlinux/$repo/os/$arch
#Server = https://mirror.example.net/archlinux/$repo/os/$arch'
}
package_which() {
  f usr/bin/which 'which 2.21' 755
}
"#;

/// The upgrade, a year later: `which` is unchanged (not rebuilt), oldsync
/// is replaced by newsync.
const PKGBUILD_V2: &str = r#"pkgbase=guardtest-base
pkgname=(filesystem pam openssh dovecot mailgate newsync pacman-mirrorlist)
pkgver=2.0
pkgrel=1
arch=(any)
license=(MIT)
pkgdesc='guard test package'

f() { install -Dm${3:-644} /dev/stdin "$pkgdir/$1" <<<"$2"; }

package_filesystem() {
  backup=(etc/passwd etc/group etc/shells etc/shadow)
  f etc/passwd 'root:x:0:0::/root:/bin/bash
bin:x:1:1::/:/usr/bin/nologin'
  f etc/group 'root:x:0:root
bin:x:1:root,bin,daemon
mail:x:12:'
  f etc/shadow 'root:*:14871::::::' 600
  f etc/shells '/bin/sh
/bin/bash
/usr/bin/sh
/usr/bin/bash'
}
package_pam() {
  backup=(etc/pam.d/system-auth etc/pam.d/system-login etc/pam.d/system-remote-login etc/pam.d/login etc/pam.d/other)
  f etc/pam.d/system-auth 'auth       required                    pam_faillock.so      preauth
-auth      [success=2 default=ignore]  pam_systemd_home.so
auth       [success=1 default=bad]     pam_unix.so          try_first_pass nullok
auth       [default=die]               pam_faillock.so      authfail
auth       optional                    pam_permit.so
auth       required                    pam_env.so
account    required                    pam_unix.so
password   required                    pam_unix.so          try_first_pass nullok shadow
session    required                    pam_unix.so'
  f etc/pam.d/system-login 'auth       include    system-auth
account    include    system-auth
session    include    system-auth'
  f etc/pam.d/system-remote-login 'auth      include   system-login
account   include   system-login
session   include   system-login'
  f etc/pam.d/login '#%PAM-1.0
auth       requisite    pam_nologin.so
auth       include      system-login
account    include      system-login
session    include      system-login'
  f etc/pam.d/other 'auth      required   pam_deny.so
account   required   pam_deny.so
session   required   pam_deny.so'
  for m in unix deny permit env faillock nologin; do f usr/lib/security/pam_$m.so "ELF pam_$m 2" 755; done
}
package_openssh() {
  backup=(etc/ssh/sshd_config etc/pam.d/sshd)
  f etc/ssh/sshd_config 'Include /etc/ssh/sshd_config.d/*.conf
#Port 22
#PermitRootLogin prohibit-password
#PasswordAuthentication yes
#PermitEmptyPasswords no
KbdInteractiveAuthentication no
UsePAM yes
Subsystem sftp /usr/lib/ssh/sftp-server'
  f etc/ssh/sshd_config.d/99-archlinux.conf 'KbdInteractiveAuthentication no
UsePAM yes
PasswordAuthentication yes'
  f etc/pam.d/sshd 'auth      include   system-remote-login
account   include   system-remote-login'
  f usr/lib/systemd/system/sshd.service '[Unit]
Description=OpenSSH Daemon
[Service]
ExecStart=/usr/bin/sshd -D
[Install]
WantedBy=multi-user.target'
  f usr/bin/sshd 'sshd 9.8' 755
}
package_dovecot() {
  backup=(etc/pam.d/dovecot)
  install=dovecot.install
  f etc/pam.d/dovecot 'auth    include system-auth
account include system-auth'
  f usr/lib/systemd/system/dovecot.service '[Unit]
Description=Dovecot IMAP/POP3 email server
[Service]
ExecStart=/usr/bin/dovecot -F
[Install]
WantedBy=multi-user.target'
  f usr/bin/dovecot 'dovecot 2.4' 755
}
package_mailgate() {
  backup=(etc/mailgate.conf)
  f etc/mailgate.conf 'listen = 0.0.0.0:25'
  f usr/bin/mailgate 'mailgate 2.0 rebuilt' 755
  f usr/lib/systemd/system/mailgate-report.service '[Unit]
Description=mail gateway report
[Service]
ExecStart=/usr/bin/mailgate-report --daily'
  f usr/lib/systemd/system/mailgated.service '[Unit]
Description=mail gateway
[Service]
ExecStart=/usr/bin/mailgate --foreground
[Install]
WantedBy=multi-user.target'
}
package_newsync() {
  replaces=(oldsync)
  conflicts=(oldsync)
  provides=(oldsync)
  backup=(etc/newsync.conf)
  f etc/newsync.conf '# newsync settings
interval = 3600'
  f usr/bin/newsync 'newsync 2.0' 755
}
package_pacman-mirrorlist() {
  backup=(etc/pacman.d/mirrorlist)
  f etc/pacman.d/mirrorlist '## Arch Linux repository mirrorlist
## Generated on 2024-06-01
#Server = https://mirror.example.org/archlinux/$repo/os/$arch
#Server = https://mirror.example.net/archlinux/$repo/os/$arch
#Server = https://mirror.example.com/archlinux/$repo/os/$arch'
}
"#;

/// The scriptlet that stands for incident 1: an upgrade's script deletes
/// the admin's PAM service file, which no package owns.
const DOVECOT_INSTALL: &str = "post_upgrade() {\n  \
    # dovecot 2.4 authenticates through /etc/pam.d/dovecot only\n  \
    rm -f /etc/pam.d/imap /etc/pam.d/pop3\n}\n";

const IMAP: &str = "auth     required  pam_unix.so\naccount  required  pam_unix.so\n";
const OLDSYNC_ADMIN: &str = "# admin: run every 10 minutes\ninterval = 600\n";
const OVERRIDE: &str = "[Service]\nUser=mailgate\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n\
                        NoNewPrivileges=yes\nProtectSystem=strict\n";
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants";

/// Both versions' package files, built once for the tests of this file
/// and removed when the last one that uses them is done.
struct Built {
    dir: tempfile::TempDir,
}

impl Built {
    fn v1(&self) -> PathBuf {
        self.dir.path().join("v1")
    }
    fn v2(&self) -> PathBuf {
        self.dir.path().join("v2")
    }
}

fn packages() -> Arc<Built> {
    static BUILT: Mutex<Weak<Built>> = Mutex::new(Weak::new());
    let mut held = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = held.upgrade() {
        return b;
    }
    let dir = tempfile::tempdir().unwrap();
    // nobody must reach its build dirs: the temp dir is root's
    chmod(dir.path(), 0o711);
    for (v, pkgbuild) in [("v1", PKGBUILD_V1), ("v2", PKGBUILD_V2)] {
        let d = dir.path().join(v);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("PKGBUILD"), pkgbuild).unwrap();
        std::fs::write(d.join("dovecot.install"), DOVECOT_INSTALL).unwrap();
        makepkg_as(NOBODY, &d);
    }
    let b = Arc::new(Built { dir });
    *held = Arc::downgrade(&b);
    b
}

fn pkg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pkg.tar.zst"))
        .collect();
    v.sort();
    v
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn symlink(target: &str, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// Copies a host binary and the shared libraries `ldd` names into the
/// root, so it runs in a chroot of it (scriptlets, alpm hooks).
fn install_binary(root: &Path, host: &str, inside: &str) {
    let dest = root.join(inside.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(host, &dest).unwrap();
    for lib in run(Cmd::new("ldd").arg(host))
        .split_whitespace()
        .filter(|t| t.starts_with('/'))
    {
        let to = root.join(lib.trim_start_matches('/'));
        if !to.exists() {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, &to).unwrap();
        }
    }
}

/// An Arch-shaped root (merged /usr: `bin`, `sbin`, `lib`, `lib64` are
/// links into `usr`), its pacman.conf naming the repo inside it, the 1.0
/// packages installed by the real pacman.
fn arch_root(tmp: &Path, built: &Built) -> PathBuf {
    let r = tmp.join("root");
    for d in [
        "usr/bin",
        "usr/lib",
        "etc",
        "var/lib/pacman",
        "var/cache/pacman/pkg",
        "var/log",
        "tmp",
        "srv/repo",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    for (link, to) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib"),
        ("usr/sbin", "bin"),
    ] {
        std::os::unix::fs::symlink(to, r.join(link)).unwrap();
    }
    chmod(&r.join("tmp"), 0o1777);
    // pacman runs scriptlets as `chroot ROOT /bin/sh`
    install_binary(&r, "/bin/sh", "/usr/bin/sh");
    install_binary(&r, "/bin/rm", "/usr/bin/rm");
    write(
        &r.join("etc/pacman.conf"),
        "[options]\nArchitecture = auto\nSigLevel = Never\nLocalFileSigLevel = Never\n\n\
         [guardtest]\nServer = file:///srv/repo\n",
    );
    publish(&r, &built.v1());
    let out = pacman(&r, &[&["-Sy"], ALL_V1].concat());
    assert!(!out.contains("error"), "{out}");
    r
}

/// Adds a directory's packages to the root's repo (`local` is reserved).
fn publish(r: &Path, dir: &Path) {
    let repo = r.join("srv/repo");
    let files = pkg_files(dir);
    for f in &files {
        std::fs::copy(f, repo.join(f.file_name().unwrap())).unwrap();
    }
    run(cmd("repo-add", ["-q"])
        .arg(repo.join("guardtest.db.tar.gz"))
        .args(files.iter().map(|f| repo.join(f.file_name().unwrap()))));
}

/// The real pacman on the root, as on the machine (`--sysroot` chroots):
/// stdout and stderr together.
fn pacman(r: &Path, args: &[&str]) -> String {
    let out = exec::output(
        &Cmd::new("pacman")
            .arg("--sysroot")
            .arg(r)
            .args(["--noconfirm", "--noprogressbar"])
            .args(args),
    )
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pacman {args:?}:\n{text}");
    text
}

/// What the admin did to the box over the years.
fn admin_state(r: &Path) {
    let edit = |p: &str, from: &str, to: &str| {
        let p = r.join(p);
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(t.contains(from), "{}: {t}", p.display());
        std::fs::write(&p, t.replacen(from, to, 1)).unwrap();
    };
    edit(
        "etc/pam.d/system-auth",
        "pam_env.so\n",
        "pam_env.so\nauth       optional                    pam_permit.so # admin: site policy\n",
    );
    edit(
        "etc/ssh/sshd_config",
        "Subsystem sftp /usr/lib/ssh/sftp-server\n",
        "Subsystem sftp /usr/lib/ssh/sftp-server\nPasswordAuthentication no\nPermitRootLogin no\n",
    );
    edit(
        "etc/pacman.d/mirrorlist",
        "#Server = https://mirror.example.org",
        "Server = https://mirror.example.org",
    );
    edit(
        "etc/passwd",
        "/usr/bin/nologin\n",
        "/usr/bin/nologin\ndovecot:x:76:76::/var/lib/dovecot:/usr/bin/nologin\n\
         mailgate:x:977:977::/:/usr/bin/nologin\n",
    );
    edit(
        "etc/group",
        "mail:x:12:\n",
        "mail:x:12:\ndovecot:x:76:\nmailgate:x:977:\n",
    );
    write(&r.join("etc/oldsync.conf"), OLDSYNC_ADMIN);
    write(
        &r.join("etc/ssh/sshd_config.d/50-admin.conf"),
        "AllowGroups wheel mail\nClientAliveInterval 300\n",
    );
    write(
        &r.join("etc/dovecot/dovecot.conf"),
        "protocols = imap\npassdb {\n  driver = pam\n  args = %s\n}\nuserdb {\n  driver = passwd\n}\n",
    );
    let imap = r.join("etc/pam.d/imap");
    write(&imap, IMAP);
    chmod(&imap, 0o640);
    chown(&imap, 0, 12);
    set_mtime(&imap, 1_600_000_000, 123_456_789);
    setcap("cap_net_bind_service=ep", &r.join("usr/bin/mailgate"));
    for u in ["sshd", "dovecot", "mailgate"] {
        symlink(
            &format!("/usr/lib/systemd/system/{u}.service"),
            &r.join(format!("{}/{u}.service", &WANTS[1..])),
        );
    }
    write(
        &r.join("etc/systemd/system/mailgate.service.d/override.conf"),
        OVERRIDE,
    );
}

/// The upgrade: 2.0 published (oldsync gone from the repo, newsync
/// replacing it), then one `pacman -Syu`. Returns pacman's output.
fn upgrade(r: &Path, built: &Built) -> String {
    run(cmd("repo-remove", ["-q"])
        .arg(r.join("srv/repo/guardtest.db.tar.gz"))
        .arg("oldsync"));
    publish(r, &built.v2());
    // pacman fetches a file:// database only when it looks newer than the
    // copy it synced; one republished in the same second or two as that
    // sync read as unchanged ("there is nothing to do") on a fast run
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for db in ["guardtest.db.tar.gz", "guardtest.files.tar.gz"] {
        std::fs::File::options()
            .write(true)
            .open(r.join("srv/repo").join(db))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    pacman(r, &["-Syu"])
}

/// What the real tools did, so the test knows what guard must find.
fn assert_upgrade_did_the_damage(r: &Path, out: &str) {
    for w in [
        "/etc/oldsync.conf saved as /etc/oldsync.conf.pacsave",
        "/etc/ssh/sshd_config installed as /etc/ssh/sshd_config.pacnew",
        "/etc/pacman.d/mirrorlist installed as /etc/pacman.d/mirrorlist.pacnew",
        "/etc/pam.d/system-auth installed as /etc/pam.d/system-auth.pacnew",
    ] {
        assert!(out.contains(w), "{w}:\n{out}");
    }
    assert!(
        !r.join("etc/pam.d/imap").exists(),
        "the scriptlet ran: {out}"
    );
    assert!(!r.join("usr/lib/systemd/system/mailgate.service").exists());
    assert!(std::fs::symlink_metadata(r.join(format!("{}/mailgate.service", &WANTS[1..]))).is_ok());
    assert!(!getcap(&r.join("usr/bin/mailgate")).contains("cap_net_bind_service"));
    assert_eq!(sshd_t(r, "passwordauthentication"), "yes");
}

/// The real `sshd -T` on the root's configuration (its absolute
/// `/etc/ssh/` paths pointed into the root), one keyword's value.
fn sshd_t(r: &Path, keyword: &str) -> String {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let dir = r.parent().unwrap();
    let hk = dir.join("hostkey");
    if !hk.exists() {
        run(cmd("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&hk));
    }
    let text = std::fs::read_to_string(r.join("etc/ssh/sshd_config")).unwrap();
    let cfg = dir.join("sshd_config.T");
    std::fs::write(
        &cfg,
        text.replace("/etc/ssh/", &format!("{}/etc/ssh/", r.display())),
    )
    .unwrap();
    let out = run(cmd("/usr/sbin/sshd", ["-T", "-f"])
        .arg(&cfg)
        .arg("-h")
        .arg(&hk));
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{keyword} ")))
        .unwrap_or_else(|| panic!("sshd -T has no {keyword}:\n{out}"))
        .to_string()
}

/// (id, paths) of the findings of one severity, in the report's order.
fn of(check: &Value, severity: &str) -> Vec<(String, Vec<String>)> {
    findings(check)
        .iter()
        .filter(|f| f["severity"] == severity)
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["paths"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn owned(v: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    v.iter()
        .map(|(id, paths)| {
            (
                id.to_string(),
                paths.iter().map(|p| p.to_string()).collect(),
            )
        })
        .collect()
}

/// The findings after the upgrade, as the admin reads them: the three
/// real critical ones in order with their fixes, then the warnings with
/// the damage before the merges waiting, and no false alarm.
fn assert_findings_after_upgrade(check: &Value) {
    assert_eq!(
        of(check, "critical"),
        owned(&[
            ("pam/service-vanished", &["/etc/pam.d/imap"]),
            ("caps/lost", &["/usr/bin/mailgate"]),
            (
                "ssh/password-auth-effective",
                &["/etc/ssh/sshd_config.d/99-archlinux.conf"]
            ),
        ]),
        "{check:#}"
    );
    let f = findings(check);
    assert_eq!(f[0]["fix"], "guard restore /etc/pam.d/imap");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("used by dovecot"),
        "{:#}",
        f[0]
    );
    assert_eq!(f[1]["fix"], "guard restore --caps");
    assert!(
        f[1]["message"]
            .as_str()
            .unwrap()
            .contains("used by mailgated.service"),
        "{:#}",
        f[1]
    );
    assert!(
        f[2]["fix"].as_str().unwrap().starts_with(
            "set `PasswordAuthentication no` in /etc/ssh/sshd_config.d/99-archlinux.conf"
        ),
        "{:#}",
        f[2]
    );
    let link = format!("{WANTS}/mailgate.service");
    assert_eq!(
        of(check, "warning"),
        owned(&[
            (
                "pkg/pending-merge",
                &["/etc/oldsync.conf.pacsave", "/etc/oldsync.conf"]
            ),
            (
                "systemd/hardening-lost",
                &[
                    "/usr/lib/systemd/system/mailgated.service",
                    "/etc/systemd/system/mailgate.service.d/override.conf"
                ]
            ),
            (
                "systemd/unit-disabled",
                &[&link, "/usr/lib/systemd/system/mailgate.service"]
            ),
            ("pkg/pending-merge", &["/etc/pacman.d/mirrorlist.pacnew"]),
            ("pkg/pending-merge", &["/etc/pam.d/system-auth.pacnew"]),
            ("pkg/pending-merge", &["/etc/ssh/sshd_config.pacnew"]),
            ("file/vanished", &["/etc/ssh/moduli"]),
        ]),
        "{check:#}"
    );
    let msg = |i: usize| f[i]["message"].as_str().unwrap().to_string();
    assert!(
        msg(3).contains("the settings in it no longer apply"),
        "{}",
        msg(3)
    );
    assert!(
        msg(4).contains("User=mailgate") && msg(4).contains("applies to no unit"),
        "{}",
        msg(4)
    );
    assert_eq!(
        f[5]["fix"],
        format!("systemctl enable mailgated.service, then remove the dangling link: rm {link}")
    );
    assert!(msg(6).contains("waits to be merged"), "{}", msg(6));
    assert!(
        msg(9).contains("openssh 1.0-1 -> 2.0-1 no longer ships it"),
        "{}",
        msg(9)
    );
    // the other service mailgate 2.0 adds is no successor of the renamed one
    assert!(
        !msg(4).contains("mailgate-report") && !msg(5).contains("mailgate-report"),
        "{check:#}"
    );
    // the rest is information: the packages, files they changed or added
    assert_eq!(
        check["summary"],
        json!({"critical": 3, "warning": 7, "info": 5})
    );
    for p in ["/etc/pam.d/login", "/etc/shells"] {
        let hits = findings_for(check, p);
        assert_eq!(hits.len(), 1, "{p}: {check:#}");
        assert_eq!(hits[0]["severity"], "info", "{p}: {:#}", hits[0]);
    }
}

#[test]
fn a_neglected_arch_box_after_pacman_syu_is_checked_and_restored() {
    let built = packages();
    let tmp = tempfile::tempdir().unwrap();
    let r = arch_root(tmp.path(), &built);
    let store = tmp.path().join("store");
    admin_state(&r);
    let imap = r.join("etc/pam.d/imap");
    let (imap_before, oldsync_before) = (state(&imap), state(&r.join("etc/oldsync.conf")));
    let (code, snap) = guard(&r, &store, &["snapshot", "--label", "before pacman -Syu"]);
    assert_eq!(code, 0, "{snap}");
    let (_, show) = guard(&r, &store, &["show", snap["id"].as_str().unwrap()]);
    assert_eq!(show["package_managers"], json!(["pacman"]), "{show:#}");
    assert_eq!(show["owners"]["/etc/ssh/sshd_config"], json!(["openssh"]));
    assert!(show["unowned"]
        .as_array()
        .unwrap()
        .contains(&json!("/etc/pam.d/imap")));

    let out = upgrade(&r, &built);
    assert_upgrade_did_the_damage(&r, &out);

    let (code, check) = guard(&r, &store, &["check"]);
    assert_eq!(code, 2, "{check:#}");
    assert_findings_after_upgrade(&check);
    let (code, text, _) = guard_text(&r, &store, &["check"]);
    assert_eq!(code, 2);
    assert_eq!(
        text.lines().next().unwrap(),
        "3 critical: mail logins (imap) will fail; mailgate lost capabilities; +1 more",
        "{text}"
    );
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");

    // the plan marks what the packages dropped, and only that
    let (code, plan, _) = guard_text(&r, &store, &["restore", "--vanished", "--dry-run"]);
    assert_eq!(code, 0, "{plan}");
    let lines: Vec<&str> = plan.lines().filter(|l| l.starts_with("  ")).collect();
    let marks: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let path = l.split_whitespace().nth(1).unwrap();
            let mark = l.rsplit_once(") (").map_or("", |(_, m)| m);
            (path, mark.trim_end_matches(')'))
        })
        .collect();
    assert_eq!(
        marks,
        [
            // PAM service files first (DESIGN §1)
            ("/etc/pam.d/imap", ""),
            ("/etc/oldsync.conf", "oldsync removed"),
            ("/etc/ssh/moduli", "dropped by openssh 1.0-1 -> 2.0-1"),
            (
                "/usr/lib/systemd/system/mailgate.service",
                "dropped by mailgate 1.0-1 -> 2.0-1"
            ),
        ],
        "{plan}"
    );
    assert!(
        plan.contains("3 of these 4 items are paths their packages dropped on purpose"),
        "{plan}"
    );

    let (code, out) = guard(&r, &store, &["restore", "--vanished"]);
    assert_eq!(code, 0, "{out:#}");
    assert_eq!(
        state(&imap),
        imap_before,
        "the admin's PAM file, byte-exact"
    );
    assert_eq!(state(&r.join("etc/oldsync.conf")), oldsync_before);
    let (code, out) = guard(&r, &store, &["restore", "--caps"]);
    assert_eq!(code, 0, "{out:#}");
    assert!(getcap(&r.join("usr/bin/mailgate")).ends_with("cap_net_bind_service=ep"));

    // what restore cannot do, the admin does as the fix line says
    write(
        &r.join("etc/ssh/sshd_config.d/10-admin-auth.conf"),
        "PasswordAuthentication no\n",
    );
    assert_eq!(sshd_t(&r, "passwordauthentication"), "no");
    let (code, check) = guard(&r, &store, &["check"]);
    assert_eq!(check["summary"]["critical"], 0, "{check:#}");
    assert_eq!(code, 1, "{check:#}");
}

/// The same upgrade with guard's alpm hooks in the root: the `pre`
/// snapshot is taken inside the transaction and the summary after it
/// leads with the same damage, before the merges waiting.
#[test]
fn a_neglected_arch_box_with_the_hooks_gets_the_summary_after_pacman_syu() {
    let built = packages();
    let tmp = tempfile::tempdir().unwrap();
    let r = arch_root(tmp.path(), &built);
    // alpm hooks run in a chroot of the root: guard must be inside it
    install_binary(&r, env!("CARGO_BIN_EXE_guard"), "/usr/bin/guard");
    let store = r.join("var/lib/guard");
    let (code, _, err) = guard_text(
        &r,
        &store,
        &["--yes", "hooks", "install", "--manager", "pacman"],
    );
    assert_eq!(code, 0, "{err}");
    admin_state(&r);

    let out = upgrade(&r, &built);
    assert_upgrade_did_the_damage(&r, &out);
    let summary: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("checking what the transaction changed"))
        .filter(|l| l.starts_with("guard:"))
        .collect();
    assert_eq!(
        summary.first().copied(),
        Some(
            "guard: 3 critical: mail logins (imap) will fail; mailgate lost capabilities; +1 more"
        ),
        "{out}"
    );
    let ids: Vec<&str> = summary
        .iter()
        .filter_map(|l| l.strip_prefix("guard:   "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "critical pam/service-vanished",
            "critical caps/lost",
            "critical ssh/password-auth-effective",
            "warning  pkg/pending-merge",
            "warning  systemd/hardening-lost",
            "warning  systemd/unit-disabled",
            "warning  pkg/pending-merge",
            "warning  pkg/pending-merge",
            "warning  pkg/pending-merge",
            "warning  file/vanished",
        ],
        "{out}"
    );
    assert_eq!(summary.last().copied(), Some("guard: details: guard check"));

    let (code, list) = guard(&r, &store, &["list"]);
    assert_eq!(code, 0);
    let snaps = list["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{list:#}");
    assert_eq!(snaps[0]["kind"], "pre");
    assert_eq!(
        snaps[0]["label"],
        "pacman: dovecot filesystem mailgate newsync oldsync openssh pacman-mirrorlist pam"
    );
    // the full check from outside, against that snapshot, says the same
    let (code, check) = guard(&r, &store, &["check"]);
    assert_eq!(code, 2, "{check:#}");
    assert_eq!(check["snapshot"], snaps[0]["id"]);
    assert_findings_after_upgrade(&check);
}
