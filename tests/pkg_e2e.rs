//! End-to-end: packages installed and upgraded by the REAL package managers
//! (pacman, rpm, dpkg) on a temporary root; `guard snapshot`, `check`,
//! `show`, `restore --vanished` and `restore --caps` on it.
//!
//! The scenario is incident 1 + 3 of DESIGN §1 for each manager: version 1
//! of `foo` ships `/etc/foo/old.conf`, `/etc/foo/main.conf` and
//! `/usr/bin/fooctl`; the admin grants `fooctl` a capability and keeps two
//! PAM files of their own; version 2 drops `old.conf`, changes `main.conf`
//! and replaces `fooctl` (caps lost); the PAM files vanish.

// Own helper file (not common/mod.rs) so other areas' helpers merge cleanly.
#[path = "common/pkg_helpers.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::*;
use guard::exec::Cmd;
use serde_json::Value;

const MAIN_V1: &str = "# foo main config, version 1\nlisten = 25\n";
const MAIN_V2: &str = "# foo main config, version 2\nlisten = 25\nworkers = 4\n";
const OLD_CONF: &str = "# obsolete setting, dropped in version 2\nlegacy = yes\n";
const CTL_V1: &str = "#!/bin/sh\necho fooctl 1\n";
const CTL_V2: &str = "#!/bin/sh\necho fooctl 2 (rebuilt)\n";
const IMAP: &str = "auth required pam_sss.so\naccount required pam_sss.so\n";
const SMTP: &str = "auth required pam_sss.so\n";

/// A temporary root plus the store and scratch space of one test.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    work: PathBuf,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let store = tmp.path().join("store");
    let work = tmp.path().join("work");
    for d in [&root, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::create_dir_all(root.join("etc/pam.d")).unwrap();
    World {
        _tmp: tmp,
        root,
        store,
        work,
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The findings of one id and path.
fn one<'a>(check: &'a Value, id: &[&str], path: &str) -> &'a Value {
    let hits: Vec<&Value> = findings_for(check, path)
        .into_iter()
        .filter(|f| id.iter().any(|i| f["id"] == *i))
        .collect();
    assert_eq!(hits.len(), 1, "one {id:?} finding for {path} in {check:#}");
    hits[0]
}

/// The whole scenario on a root where `install_v1` and `upgrade_v2` run the
/// real package manager. `removes_old_conf`: whether that manager deletes a
/// config file the new version no longer ships (pacman and rpm do; dpkg
/// keeps it as an obsolete conffile).
fn scenario(
    manager: &str,
    w: &World,
    install_v1: &dyn Fn(&World),
    upgrade_v2: &dyn Fn(&World),
    removes_old_conf: bool,
) {
    let (root, store) = (&w.root, &w.store);
    install_v1(w);
    let fooctl = root.join("usr/bin/fooctl");
    assert_eq!(std::fs::read_to_string(&fooctl).unwrap(), CTL_V1);
    setcap("cap_net_bind_service=ep", &fooctl);

    // the admin's own PAM files, with metadata restore must bring back
    let imap = root.join("etc/pam.d/imap");
    let smtp = root.join("etc/pam.d/smtp");
    write(&imap, IMAP);
    write(&smtp, SMTP);
    chmod(&imap, 0o640);
    chown(&imap, 0, 42);
    set_xattr(&imap, "user.guard-test", b"mail via ldap");
    set_mtime(&imap, 1_600_000_000, 123_456_789);
    chmod(&smtp, 0o644);
    chown(&smtp, 1234, 1234);
    set_mtime(&smtp, 1_500_000_000, 987_654_321);
    let (imap_before, smtp_before) = (state(&imap), state(&smtp));
    let old_conf = root.join("etc/foo/old.conf");
    let old_before = state(&old_conf);

    let (code, snap) = guard(root, store, &["snapshot", "--label", "before upgrade"]);
    assert_eq!(code, 0, "{snap}");
    let id = snap["id"].as_str().expect("snapshot id").to_string();

    // ownership as recorded
    let (code, show) = guard(root, store, &["show", &id]);
    assert_eq!(code, 0, "{show}");
    assert!(
        show["package_managers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == manager),
        "{show:#}"
    );
    assert_eq!(
        show["owners"]["/etc/foo/main.conf"],
        serde_json::json!(["foo"])
    );
    assert_eq!(
        show["owners"]["/etc/foo/old.conf"],
        serde_json::json!(["foo"])
    );
    let unowned = show["unowned"].as_array().unwrap();
    for p in ["/etc/pam.d/imap", "/etc/pam.d/smtp"] {
        assert!(unowned.iter().any(|u| u == p), "{p} unowned: {show:#}");
        assert!(show["owners"].get(p).is_none());
    }
    let cap = show["caps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/usr/bin/fooctl")
        .unwrap_or_else(|| panic!("fooctl in the caps ledger: {show:#}"));
    assert_eq!(cap["caps"], "cap_net_bind_service=ep");
    assert_eq!(cap["owners"], serde_json::json!(["foo"]));

    // the upgrade, then the admin's files vanish
    upgrade_v2(w);
    assert_eq!(std::fs::read_to_string(&fooctl).unwrap(), CTL_V2);
    assert!(
        !getcap(&fooctl).contains("cap_net_bind_service"),
        "the package manager replaced fooctl"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/foo/main.conf")).unwrap(),
        MAIN_V2
    );
    assert_eq!(
        old_conf.exists(),
        !removes_old_conf,
        "{manager} and old.conf"
    );
    std::fs::remove_file(&imap).unwrap();
    std::fs::remove_file(&smtp).unwrap();

    let (code, check) = guard(root, store, &["check"]);
    assert_eq!(code, 2, "{check:#}");
    assert_eq!(check["snapshot"], id.as_str());
    for p in ["/etc/pam.d/imap", "/etc/pam.d/smtp"] {
        // a PAM-specific check may claim the path instead (DESIGN §2: one
        // finding per kind of damage); either way critical, same fix
        let f = one(&check, &["file/vanished", "pam/service-vanished"], p);
        assert_eq!(f["severity"], "critical", "{f:#}");
        assert_eq!(f["fix"], format!("guard restore {p}"), "{f:#}");
    }
    let f = one(&check, &["caps/lost"], "/usr/bin/fooctl");
    assert_eq!(f["severity"], "critical", "{f:#}");
    assert_eq!(f["fix"], "guard restore --caps");
    assert!(f["message"]
        .as_str()
        .unwrap()
        .contains("cap_net_bind_service=ep"));
    assert!(f["message"].as_str().unwrap().contains("replaced"), "{f:#}");
    let f = one(&check, &["file/modified"], "/etc/foo/main.conf");
    assert_eq!(f["severity"], "info", "the package changed it: {f:#}");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("foo 1.0-1 -> 2.0-1"),
        "{f:#}"
    );
    let pkg: Vec<&Value> = findings(&check)
        .iter()
        .filter(|f| f["id"] == "pkg/changed")
        .collect();
    assert_eq!(pkg.len(), 1, "{check:#}");
    assert_eq!(pkg[0]["severity"], "info");
    assert!(pkg[0]["message"].as_str().unwrap().contains("1 upgraded"));
    assert!(
        pkg[0]["detail"]
            .as_str()
            .unwrap()
            .contains("upgraded foo 1.0-1 -> 2.0-1"),
        "{:#}",
        pkg[0]
    );
    if removes_old_conf {
        let f = one(&check, &["file/vanished"], "/etc/foo/old.conf");
        assert_eq!(f["severity"], "warning", "package-owned: {f:#}");
        assert!(f["message"].as_str().unwrap().contains("owned by foo"));
        // the package dropped it on purpose, and the check says so as the
        // restore plan does
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains("foo 1.0-1 -> 2.0-1 no longer ships it"),
            "{f:#}"
        );
        assert_eq!(f["fix"], "guard restore /etc/foo/old.conf");
    } else {
        assert!(
            findings_for(&check, "/etc/foo/old.conf").is_empty(),
            "{check:#}"
        );
    }

    // restore what vanished, then the capability
    let (code, out) = guard(root, store, &["restore", "--vanished"]);
    assert_eq!(code, 0, "{out:#}");
    assert_eq!(
        state(&imap),
        imap_before,
        "imap back byte-exact with metadata"
    );
    assert_eq!(
        state(&smtp),
        smtp_before,
        "smtp back byte-exact with metadata"
    );
    assert_eq!(state(&old_conf), old_before, "old.conf back as it was");
    let (code, out) = guard(root, store, &["restore", "--caps"]);
    assert_eq!(code, 0, "{out:#}");
    assert!(
        getcap(&fooctl).ends_with("cap_net_bind_service=ep"),
        "{}",
        getcap(&fooctl)
    );
    assert_eq!(
        std::fs::read_to_string(&fooctl).unwrap(),
        CTL_V2,
        "the new binary keeps"
    );

    let (code, check) = guard(root, store, &["check"]);
    assert!(code <= 1, "no critical finding after restore: {check:#}");
    assert!(
        findings(&check).iter().all(|f| f["severity"] != "critical"),
        "{check:#}"
    );
    assert_eq!(check["summary"]["critical"], 0);
}

// ---------------------------------------------------------------- pacman

/// makepkg refuses to run as root; it runs as `nobody` (uid 65534) so the
/// test needs no account of its own in the host's /etc/passwd.
const NOBODY: u32 = 65534;

fn pkgbuild(version: &str, main: &str, ctl: &str, with_old: bool) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut backup = "etc/foo/main.conf".to_string();
    let mut body = format!(
        "  mkdir -p \"$pkgdir/etc/foo\" \"$pkgdir/usr/bin\"\n  \
         printf %s {} > \"$pkgdir/etc/foo/main.conf\"\n  \
         printf %s {} > \"$pkgdir/usr/bin/fooctl\"\n  \
         chmod 755 \"$pkgdir/usr/bin/fooctl\"\n",
        q(main),
        q(ctl)
    );
    if with_old {
        backup.push_str(" etc/foo/old.conf");
        body.push_str(&format!(
            "  printf %s {} > \"$pkgdir/etc/foo/old.conf\"\n",
            q(OLD_CONF)
        ));
    }
    format!(
        "pkgname=foo\npkgver={version}\npkgrel=1\npkgdesc='guard test package'\n\
         arch=(any)\nlicense=(MIT)\nbackup=({backup})\n\
         package() {{\n{body}}}\n"
    )
}

/// Builds foo VERSION with the real makepkg; returns the package file.
fn makepkg(w: &World, version: &str, main: &str, ctl: &str, with_old: bool) -> PathBuf {
    let dir = w.work.join(format!("build-{version}"));
    write(
        &dir.join("PKGBUILD"),
        &pkgbuild(version, main, ctl, with_old),
    );
    // nobody must reach its build dir: the test's temp dir is root's
    chmod(w.work.parent().unwrap(), 0o711);
    chmod(&w.work, 0o711);
    makepkg_as(NOBODY, &dir);
    let pkg = dir.join(format!("foo-{version}-1-any.pkg.tar.zst"));
    assert!(pkg.is_file(), "makepkg built {}", pkg.display());
    pkg
}

/// `pacman` with everything pointed into the root and the test's repo.
fn pacman(w: &World) -> Cmd {
    let r = &w.root;
    Cmd::new("pacman")
        .arg("--config")
        .arg(w.work.join("pacman.conf"))
        .arg("--root")
        .arg(r)
        .arg("--dbpath")
        .arg(r.join("var/lib/pacman"))
        .arg("--cachedir")
        .arg(r.join("var/cache/pacman/pkg"))
        .arg("--logfile")
        .arg(r.join("var/log/pacman.log"))
        .arg("--hookdir")
        .arg(r.join("etc/pacman.d/hooks"))
        .arg("--gpgdir")
        .arg(w.work.join("gnupg"))
        .args(["--noconfirm", "--noprogressbar"])
}

#[test]
fn pacman_upgrade_is_checked_and_restored() {
    let w = world();
    let install = |w: &World| {
        let pkg = makepkg(w, "1.0", MAIN_V1, CTL_V1, true);
        let repo = w.work.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::copy(&pkg, repo.join(pkg.file_name().unwrap())).unwrap();
        run(cmd("repo-add", ["-q"])
            .arg(repo.join("guardtest.db.tar.gz"))
            .arg(repo.join(pkg.file_name().unwrap())));
        // `local` is reserved, hence `guardtest`
        write(
            &w.work.join("pacman.conf"),
            &format!(
                "[options]\nArchitecture = auto\nSigLevel = Never\n\n[guardtest]\nServer = file://{}\n",
                repo.display()
            ),
        );
        for d in ["var/lib/pacman", "var/cache/pacman/pkg", "var/log"] {
            std::fs::create_dir_all(w.root.join(d)).unwrap();
        }
        run(pacman(w).args(["-Sy", "foo"]));
    };
    let upgrade = |w: &World| {
        let pkg = makepkg(w, "2.0", MAIN_V2, CTL_V2, false);
        run(pacman(w).arg("-U").arg(&pkg));
    };
    scenario("pacman", &w, &install, &upgrade, true);
}

// ---------------------------------------------------------------- rpm

fn spec(version: &str, main: &str, ctl: &str, with_old: bool) -> String {
    let mut install = format!(
        "mkdir -p %{{buildroot}}/etc/foo %{{buildroot}}/usr/bin\n\
         cat > %{{buildroot}}/etc/foo/main.conf <<'GUARD_EOF'\n{main}GUARD_EOF\n\
         cat > %{{buildroot}}/usr/bin/fooctl <<'GUARD_EOF'\n{ctl}GUARD_EOF\n\
         chmod 755 %{{buildroot}}/usr/bin/fooctl\n"
    );
    let mut files = "%config(noreplace) /etc/foo/main.conf\n/usr/bin/fooctl\n".to_string();
    if with_old {
        install.push_str(&format!(
            "cat > %{{buildroot}}/etc/foo/old.conf <<'GUARD_EOF'\n{OLD_CONF}GUARD_EOF\n"
        ));
        files.push_str("%config(noreplace) /etc/foo/old.conf\n");
    }
    format!(
        "Name: foo\nVersion: {version}\nRelease: 1\nSummary: guard test package\n\
         License: MIT\nBuildArch: noarch\n\n%description\nguard test package\n\n\
         %install\n{install}\n%files\n{files}"
    )
}

/// Builds foo VERSION with the real rpmbuild; returns the package file.
fn rpmbuild(w: &World, version: &str, main: &str, ctl: &str, with_old: bool) -> PathBuf {
    let top = w.work.join("rpmbuild");
    let spec_file = w.work.join(format!("foo-{version}.spec"));
    write(&spec_file, &spec(version, main, ctl, with_old));
    run(Cmd::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg(&spec_file)
        .env("HOME", &w.work));
    let pkg = top.join(format!("RPMS/noarch/foo-{version}-1.noarch.rpm"));
    assert!(pkg.is_file(), "rpmbuild built {}", pkg.display());
    pkg
}

/// `rpm` on the root's own database; never `~/.rpmdb` (DESIGN §6).
fn rpm(w: &World) -> Cmd {
    Cmd::new("rpm")
        .arg("--root")
        .arg(&w.root)
        .args(["--dbpath", "/var/lib/rpm"])
        .env("HOME", &w.work)
}

#[test]
fn rpm_upgrade_is_checked_and_restored() {
    let w = world();
    let install = |w: &World| {
        let pkg = rpmbuild(w, "1.0", MAIN_V1, CTL_V1, true);
        std::fs::create_dir_all(w.root.join("var/lib/rpm")).unwrap();
        run(rpm(w).arg("--initdb"));
        run(rpm(w).args(["-i", "--nodeps", "--force-debian"]).arg(&pkg));
    };
    let upgrade = |w: &World| {
        let pkg = rpmbuild(w, "2.0", MAIN_V2, CTL_V2, false);
        run(rpm(w).args(["-U", "--nodeps", "--force-debian"]).arg(&pkg));
    };
    scenario("rpm", &w, &install, &upgrade, true);
}

/// openSUSE keeps the database in `/usr/lib/sysimage/rpm` with
/// `/var/lib/rpm` a symlink to it; Debian's rpm would read `~/.rpmdb`
/// unless told. guard must find the root's own database and own every file
/// of a package with several files (the `%{=NAME}` trap).
#[test]
fn rpm_ownership_comes_from_the_roots_sysimage_database() {
    let w = world();
    let pkg = rpmbuild(&w, "1.0", MAIN_V1, CTL_V1, true);
    std::fs::create_dir_all(w.root.join("usr/lib/sysimage/rpm")).unwrap();
    std::fs::create_dir_all(w.root.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("../../usr/lib/sysimage/rpm", w.root.join("var/lib/rpm")).unwrap();
    let rpm = |w: &World| {
        Cmd::new("rpm")
            .arg("--root")
            .arg(&w.root)
            .args(["--dbpath", "/usr/lib/sysimage/rpm"])
            .env("HOME", &w.work)
    };
    run(rpm(&w).arg("--initdb"));
    run(rpm(&w).args(["-i", "--nodeps", "--force-debian"]).arg(&pkg));
    let home = w.work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (code, snap) = guard_env(&w.root, &w.store, &[("HOME", &home)], &["snapshot"]);
    assert_eq!(code, 0, "{snap}");
    assert!(
        !home.join(".rpmdb").exists(),
        "guard must not touch ~/.rpmdb"
    );
    let (code, show) = guard(&w.root, &w.store, &["show", snap["id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{show}");
    assert_eq!(show["package_managers"], serde_json::json!(["rpm"]));
    assert_eq!(show["packages"], 1);
    for p in ["/etc/foo/main.conf", "/etc/foo/old.conf"] {
        assert_eq!(
            show["owners"][p],
            serde_json::json!(["foo"]),
            "{p}: {show:#}"
        );
    }
    assert_eq!(show["errors"], 0, "{show:#}");

    // A first snapshot that could not read the database (no rpm on PATH)
    // records the error; the next one reads it again instead of reusing
    // "no owner" for every path.
    let store = w.work.join("store2");
    let nowhere = w.work.join("no-bin");
    std::fs::create_dir_all(&nowhere).unwrap();
    let (code, snap) = guard_env(&w.root, &store, &[("PATH", &nowhere)], &["snapshot"]);
    assert_eq!(code, 0, "{snap}");
    let (_, show) = guard(&w.root, &store, &["show", snap["id"].as_str().unwrap()]);
    assert!(show["errors"].as_u64().unwrap() > 0, "{show:#}");
    let (code, snap) = guard_env(&w.root, &store, &[("HOME", &home)], &["snapshot"]);
    assert_eq!(code, 0, "{snap}");
    let (_, show) = guard(&w.root, &store, &["show", snap["id"].as_str().unwrap()]);
    assert_eq!(
        show["owners"]["/etc/foo/main.conf"],
        serde_json::json!(["foo"]),
        "{show:#}"
    );
    assert_eq!(show["errors"], 0, "{show:#}");
}

// ---------------------------------------------------------------- dpkg

/// Builds foo VERSION with the real dpkg-deb; returns the package file.
fn dpkg_deb(w: &World, version: &str, main: &str, ctl: &str, with_old: bool) -> PathBuf {
    let d = w.work.join(format!("deb-{version}"));
    write(
        &d.join("DEBIAN/control"),
        &format!(
            "Package: foo\nVersion: {version}-1\nArchitecture: all\n\
             Maintainer: guard tests <root@localhost>\nDescription: guard test package\n"
        ),
    );
    write(&d.join("etc/foo/main.conf"), main);
    write(&d.join("usr/bin/fooctl"), ctl);
    chmod(&d.join("usr/bin/fooctl"), 0o755);
    let mut conffiles = "/etc/foo/main.conf\n".to_string();
    if with_old {
        write(&d.join("etc/foo/old.conf"), OLD_CONF);
        conffiles.push_str("/etc/foo/old.conf\n");
    }
    write(&d.join("DEBIAN/conffiles"), &conffiles);
    let pkg = w.work.join(format!("foo_{version}-1_all.deb"));
    run(cmd("dpkg-deb", ["--root-owner-group", "--build"])
        .arg(&d)
        .arg(&pkg));
    pkg
}

/// `dpkg` on the root: its own admin dir and log (dpkg reads the host's
/// dpkg.cfg even with --root, so the log is named explicitly).
fn dpkg(w: &World) -> Cmd {
    let r = &w.root;
    Cmd::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .arg(format!("--admindir={}", r.join("var/lib/dpkg").display()))
        .arg(format!("--log={}", r.join("var/log/dpkg.log").display()))
        .arg("--force-not-root")
}

#[test]
fn dpkg_upgrade_is_checked_and_restored() {
    let w = world();
    let install = |w: &World| {
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
            std::fs::create_dir_all(w.root.join(d)).unwrap();
        }
        write(&w.root.join("var/lib/dpkg/status"), "");
        let pkg = dpkg_deb(w, "1.0", MAIN_V1, CTL_V1, true);
        run(dpkg(w).arg("-i").arg(&pkg));
    };
    let upgrade = |w: &World| {
        let pkg = dpkg_deb(w, "2.0", MAIN_V2, CTL_V2, false);
        run(dpkg(w).arg("-i").arg(&pkg));
    };
    // dpkg keeps an unmodified conffile the new version dropped (obsolete)
    scenario("dpkg", &w, &install, &upgrade, false);
}

/// Merged /usr: Debian packages list `/lib/systemd/system/…` while `/lib`
/// is a symlink to `usr/lib`; guard walks the real directory, so the unit
/// must be owned there, not look like an admin's own file.
#[test]
fn dpkg_paths_listed_under_a_merged_usr_link_are_owned_where_guard_sees_them() {
    let w = world();
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/log",
        "usr/lib",
    ] {
        std::fs::create_dir_all(w.root.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("usr/lib", w.root.join("lib")).unwrap();
    write(&w.root.join("var/lib/dpkg/status"), "");
    let d = w.work.join("deb-unit");
    write(
        &d.join("DEBIAN/control"),
        "Package: foo-unit\nVersion: 1.0-1\nArchitecture: all\n\
         Maintainer: guard tests <root@localhost>\nDescription: guard test package\n",
    );
    write(
        &d.join("lib/systemd/system/foo.service"),
        "[Service]\nExecStart=/usr/bin/fooctl\n",
    );
    let pkg = w.work.join("foo-unit_1.0-1_all.deb");
    run(cmd("dpkg-deb", ["--root-owner-group", "--build"])
        .arg(&d)
        .arg(&pkg));
    run(dpkg(&w).arg("-i").arg(&pkg));
    assert!(w.root.join("usr/lib/systemd/system/foo.service").is_file());
    let list = std::fs::read_to_string(w.root.join("var/lib/dpkg/info/foo-unit.list")).unwrap();
    assert!(list.contains("\n/lib/systemd/system/foo.service"), "{list}");

    let (code, snap) = guard(&w.root, &w.store, &["snapshot"]);
    assert_eq!(code, 0, "{snap}");
    let (code, show) = guard(&w.root, &w.store, &["show", snap["id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{show}");
    assert_eq!(
        show["owners"]["/usr/lib/systemd/system/foo.service"],
        serde_json::json!(["foo-unit"]),
        "{show:#}"
    );
    assert!(!show["unowned"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "/usr/lib/systemd/system/foo.service"));
}

/// A local diversion made with the real `dpkg-divert`: the package's
/// main.conf now lives at main.conf.dpkg-local, and the file at the original
/// name is the admin's own. Ownership must follow the diversion.
#[test]
fn dpkg_diversions_move_ownership_with_the_file() {
    let w = world();
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(w.root.join(d)).unwrap();
    }
    write(&w.root.join("var/lib/dpkg/status"), "");
    let pkg = dpkg_deb(&w, "1.0", MAIN_V1, CTL_V1, false);
    run(dpkg(&w).arg("-i").arg(&pkg));
    run(Cmd::new("dpkg-divert")
        .arg(format!("--root={}", w.root.display()))
        .arg(format!(
            "--admindir={}",
            w.root.join("var/lib/dpkg").display()
        ))
        .args([
            "--local",
            "--rename",
            "--divert",
            "/etc/foo/main.conf.dpkg-local",
            "--add",
            "/etc/foo/main.conf",
        ]));
    assert!(w.root.join("etc/foo/main.conf.dpkg-local").is_file());
    write(&w.root.join("etc/foo/main.conf"), "admin's own\n");

    let (code, snap) = guard(&w.root, &w.store, &["snapshot"]);
    assert_eq!(code, 0, "{snap}");
    let (code, show) = guard(&w.root, &w.store, &["show", snap["id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{show}");
    assert_eq!(
        show["owners"]["/etc/foo/main.conf.dpkg-local"],
        serde_json::json!(["foo"]),
        "{show:#}"
    );
    assert!(show["owners"]["/etc/foo/main.conf"].is_null(), "{show:#}");
    assert!(show["unowned"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "/etc/foo/main.conf"));
}

/// A dpkg root with foo 1.0 installed by the real dpkg.
fn dpkg_root_with_foo(w: &World) {
    dpkg_root(w);
    run(dpkg(w)
        .arg("-i")
        .arg(dpkg_deb(w, "1.0", MAIN_V1, CTL_V1, true)));
}

/// The findings of one id in a `check --json` document.
fn with_id<'a>(check: &'a Value, id: &str) -> Vec<&'a Value> {
    findings(check).iter().filter(|f| f["id"] == id).collect()
}

fn dpkg_root(w: &World) {
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(w.root.join(d)).unwrap();
    }
    write(&w.root.join("var/lib/dpkg/status"), "");
}

fn owners_in(w: &World, id: &str, path: &str) -> Value {
    let (code, v) = guard(&w.root, &w.store, &["show", id]);
    assert_eq!(code, 0, "{v}");
    v["owners"][path].clone()
}

fn snapshot_id(w: &World, kind: &str) -> String {
    let (code, v) = guard(&w.root, &w.store, &["snapshot", "--kind", kind]);
    assert_eq!(code, 0, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// A snapshot reuses the previous one's owners while the database is
/// unchanged, but not for a path that snapshot lacked (here: one a restore
/// put back): that path would pass for an admin's own file, and its loss in
/// the next upgrade for a critical one.
#[test]
fn dpkg_owners_of_a_path_the_cached_snapshot_lacked_are_read_again() {
    let w = world();
    dpkg_root_with_foo(&w);
    snapshot_id(&w, "manual");
    std::fs::remove_file(w.root.join("etc/foo/old.conf")).unwrap();
    snapshot_id(&w, "timer");
    let (code, v) = guard(
        &w.root,
        &w.store,
        &["restore", "--yes", "/etc/foo/old.conf"],
    );
    assert_eq!(code, 0, "{v}");
    let pre = snapshot_id(&w, "pre");
    assert_eq!(
        owners_in(&w, &pre, "/etc/foo/old.conf"),
        serde_json::json!(["foo"])
    );
}

/// An upgrade dpkg unpacked but never configured (apt killed, a maintainer
/// script that failed) is `pkg/unfinished`, naming the package and its
/// state, with the command that finishes it; once that ran, it is gone.
#[test]
fn dpkg_packages_left_unconfigured_are_reported_until_configured() {
    let w = world();
    dpkg_root_with_foo(&w);
    snapshot_id(&w, "pre");
    let unfinished = |check: &Value| with_id(check, "pkg/unfinished").len();
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(unfinished(&v), 0, "{v:#}");
    // the real dpkg, stopped between unpacking and configuring
    run(dpkg(&w)
        .arg("--unpack")
        .arg(dpkg_deb(&w, "2.0", MAIN_V1, CTL_V2, true)));
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    let found = with_id(&v, "pkg/unfinished");
    assert_eq!(found.len(), 1, "{v:#}");
    assert_eq!(found[0]["severity"], "warning", "{v:#}");
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap()
            .ends_with("dpkg left 1 package unfinished: foo (unpacked)"),
        "{v:#}"
    );
    assert!(
        found[0]["fix"]
            .as_str()
            .unwrap()
            .starts_with("dpkg --configure -a"),
        "{v:#}"
    );
    assert!(code >= 1, "a warning at least: {v:#}");
    // the fix it names, then nothing left to report
    run(dpkg(&w).arg("--configure").arg("-a"));
    let (_, v) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(unfinished(&v), 0, "{v:#}");
}

/// A package already stuck when the baseline was taken is still stuck:
/// apt refuses to run until `dpkg --configure -a`, whatever the snapshot
/// saw. `check` says so on every run, not only after a transaction.
#[test]
fn dpkg_packages_unfinished_before_the_snapshot_are_still_reported() {
    let w = world();
    dpkg_root_with_foo(&w);
    run(dpkg(&w)
        .arg("--unpack")
        .arg(dpkg_deb(&w, "2.0", MAIN_V1, CTL_V2, true)));
    snapshot_id(&w, "pre");
    // nothing ran since: the package databases are as the snapshot saw them
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    let found = with_id(&v, "pkg/unfinished");
    assert_eq!(found.len(), 1, "{v:#}");
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap()
            .ends_with("dpkg left 1 package unfinished: foo (unpacked)"),
        "{v:#}"
    );
    assert!(code >= 1, "a warning at least: {v:#}");
    run(dpkg(&w).arg("--configure").arg("-a"));
    let (_, v) = guard(&w.root, &w.store, &["check"]);
    assert!(with_id(&v, "pkg/unfinished").is_empty(), "{v:#}");
}

/// A dpkg killed mid-upgrade (apt interrupted, the session lost, a power
/// cut) notes each state in `var/lib/dpkg/updates/` and never gets to fold
/// it into `status`: killed in the new version's preinst, before any
/// `info/*.list` changed, it leaves `status` and `info` as they were. It is
/// still `pkg/unfinished` (`dpkg --audit` and apt read `updates/` too).
#[test]
fn dpkg_killed_mid_upgrade_is_reported_unfinished() {
    let w = world();
    dpkg_root_with_foo(&w);
    snapshot_id(&w, "pre");
    // version 2, whose preinst kills the dpkg that runs it
    let v2 = dpkg_deb(&w, "2.0", MAIN_V2, CTL_V2, false);
    let d = w.work.join("deb-2.0");
    write(
        &d.join("DEBIAN/preinst"),
        "#!/bin/sh\nkill -9 \"$PPID\"\nexit 0\n",
    );
    chmod(&d.join("DEBIAN/preinst"), 0o755);
    run(cmd("dpkg-deb", ["--root-owner-group", "--build"])
        .arg(&d)
        .arg(&v2));
    let killed =
        guard::exec::output(&dpkg(&w).arg("--force-script-chrootless").arg("-i").arg(&v2)).unwrap();
    assert!(!killed.status.success(), "dpkg was to be killed");
    let updates = std::fs::read_dir(w.root.join("var/lib/dpkg/updates"))
        .unwrap()
        .count();
    assert!(updates > 0, "dpkg left its notes in updates/");
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    let found = with_id(&v, "pkg/unfinished");
    assert_eq!(found.len(), 1, "{v:#}");
    let msg = found[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("foo (half-installed, must be reinstalled)"),
        "{v:#}"
    );
    assert!(code >= 1, "{v:#}");
}

/// `dpkg -r` keeps a package's conffiles and its list: they are still its
/// own (`dpkg -S` says so), though it is no longer installed.
#[test]
fn dpkg_conffiles_of_a_removed_package_are_still_owned() {
    let w = world();
    dpkg_root_with_foo(&w);
    run(dpkg(&w).arg("-r").arg("foo"));
    assert!(w.root.join("etc/foo/main.conf").exists());
    let id = snapshot_id(&w, "manual");
    assert_eq!(
        owners_in(&w, &id, "/etc/foo/main.conf"),
        serde_json::json!(["foo"])
    );
    let (_, v) = guard(&w.root, &w.store, &["show", &id]);
    assert_eq!(v["packages"], 0, "{v}");
}

/// Debian packages create some configuration files from a template in
/// their postinst, with ucf, instead of shipping them as conffiles (the
/// `sshd_config` of openssh-server, dovecot's `conf.d`): no `.list` names
/// them, but ucf's registry does. They are the package's, so a release
/// upgrade that drops one (dovecot 2.4 dropped `10-director.conf`) is a
/// package's file vanished, not the loss of an admin's own file; the admin's
/// file beside it still is.
#[test]
fn dpkg_files_registered_with_ucf_are_the_packages() {
    let w = world();
    dpkg_root_with_foo(&w);
    // what foo's postinst does: ucf writes the file and ucfr records it
    write(&w.root.join("etc/foo/generated.conf"), "from a template\n");
    write(&w.root.join("etc/foo/local.conf"), "the admin's own\n");
    let ucf = w.root.join("var/lib/ucf");
    std::fs::create_dir_all(&ucf).unwrap();
    run(Cmd::new("ucfr")
        .arg("--state-dir")
        .arg(&ucf)
        .args(["foo", "/etc/foo/generated.conf"]));
    // a stale entry of a package not on disk owns nothing
    run(Cmd::new("ucfr")
        .arg("--state-dir")
        .arg(&ucf)
        .args(["gone", "/etc/foo/local.conf"]));
    let id = snapshot_id(&w, "manual");
    assert_eq!(
        owners_in(&w, &id, "/etc/foo/generated.conf"),
        serde_json::json!(["foo"])
    );
    assert!(owners_in(&w, &id, "/etc/foo/local.conf").is_null());

    for f in ["generated.conf", "local.conf"] {
        std::fs::remove_file(w.root.join("etc/foo").join(f)).unwrap();
    }
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(code, 2, "{v:#}");
    let generated = one(&v, &["file/vanished"], "/etc/foo/generated.conf");
    assert_eq!(generated["severity"], "warning", "{v:#}");
    assert!(
        generated["message"]
            .as_str()
            .unwrap()
            .contains("(owned by foo"),
        "{v:#}"
    );
    let local = one(&v, &["file/vanished"], "/etc/foo/local.conf");
    assert_eq!(local["severity"], "critical", "{v:#}");
}

/// openSUSE keeps an ndb database (`Packages.db`), which Debian's rpm
/// cannot read: it used to list nothing, exit 0 and create rpmdb.sqlite
/// inside the root, and every path passed for an admin's own. Now the
/// snapshot records that ownership is unknown, and the root is left alone.
#[test]
fn an_rpm_database_the_host_cannot_read_is_an_error_not_an_empty_one() {
    let w = world();
    let db = w.root.join("usr/lib/sysimage/rpm");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("Packages.db"), vec![0x5a; 8192]).unwrap();
    write(
        &w.root.join("etc/pam.d/sshd"),
        "auth required pam_unix.so\n",
    );
    let home = w.work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (code, snap) = guard_env(&w.root, &w.store, &[("HOME", &home)], &["snapshot"]);
    assert_eq!(code, 0, "{snap}");
    let id = snap["id"].as_str().unwrap();
    let doc: Value = serde_json::from_slice(
        &std::fs::read(w.store.join("snapshots").join(format!("{id}.json"))).unwrap(),
    )
    .unwrap();
    let errors = doc["manifest"]["errors"].to_string();
    assert!(errors.contains("ownership unknown"), "{errors}");
    let left: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["Packages.db"], "rpm wrote into the root");
}

// ------------------------------------- what a release upgrade drops on purpose

/// A package NAME VERSION of the given files (`conffiles` among them),
/// built with the real dpkg-deb; `postinst` is its maintainer script, run
/// by dpkg with `--force-script-chrootless` (so it writes under
/// `$DPKG_ROOT`).
fn deb(
    w: &World,
    name: &str,
    version: &str,
    files: &[(&str, &str)],
    conffiles: &[&str],
    postinst: Option<&str>,
) -> PathBuf {
    let d = w.work.join(format!("deb-{name}-{version}"));
    write(
        &d.join("DEBIAN/control"),
        &format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: guard tests <root@localhost>\nDescription: guard test package\n"
        ),
    );
    for (p, text) in files {
        write(&d.join(p.trim_start_matches('/')), text);
    }
    if !conffiles.is_empty() {
        write(&d.join("DEBIAN/conffiles"), &(conffiles.join("\n") + "\n"));
    }
    if let Some(script) = postinst {
        write(&d.join("DEBIAN/postinst"), script);
        chmod(&d.join("DEBIAN/postinst"), 0o755);
    }
    let pkg = w.work.join(format!("{name}_{version}_all.deb"));
    run(cmd("dpkg-deb", ["--root-owner-group", "--build"])
        .arg(&d)
        .arg(&pkg));
    pkg
}

/// `dpkg -i` of the packages, their maintainer scripts run outside a chroot
/// (the root has no shell of its own).
fn dpkg_install(w: &World, pkgs: &[PathBuf]) {
    // dpkg stamps its log in local time; the root has no /etc/localtime,
    // which means UTC
    run(dpkg(w)
        .env("TZ", "UTC")
        .arg("--force-script-chrootless")
        .arg("-i")
        .args(pkgs.iter().map(|p| p.as_os_str())));
}

/// `guard ARGS…` as the admin runs it (no `--json`): exit code, stdout,
/// stderr.
fn guard_text(w: &World, args: &[&str]) -> (i32, String, String) {
    common::guard_text(&w.root, &w.store, args)
}

const OLD_UNIT: &str = "/usr/lib/systemd/system/foo-old.service";
const FOO_UNIT: &str = "/usr/lib/systemd/system/foo.service";
const BAR_UNIT: &str = "/usr/lib/systemd/system/bar.service";

/// After a release upgrade `restore --vanished` plans to bring back what
/// the new versions no longer ship beside the admin's own lost files. The
/// plan tells them apart: a path whose owner was upgraded to a version
/// that no longer ships it, or removed, is marked so (in text and as the
/// item's `dropped` in JSON); a package file deleted while its package
/// still ships it, and the admin's own file, are not. `--yes` still
/// restores every item, as `--vanished` promises, after a line saying
/// how many of them the packages dropped.
#[test]
fn dpkg_restore_plan_marks_what_the_packages_dropped() {
    let w = world();
    dpkg_root(&w);
    let unit = "[Service]\nExecStart=/usr/bin/true\n";
    dpkg_install(
        &w,
        &[
            deb(
                &w,
                "foo",
                "1.0-1",
                &[(OLD_UNIT, unit), (FOO_UNIT, unit)],
                &[],
                None,
            ),
            deb(&w, "bar", "1.0-1", &[(BAR_UNIT, unit)], &[], None),
        ],
    );
    write(&w.root.join("etc/pam.d/imap"), IMAP);
    let (code, snap) = guard(&w.root, &w.store, &["snapshot"]);
    assert_eq!(code, 0, "{snap}");

    // foo 2.0 no longer ships foo-old.service (dpkg removes it), bar is
    // removed; the admin's PAM file and foo.service, which foo 2.0 still
    // ships, are lost by other hands
    dpkg_install(
        &w,
        &[deb(&w, "foo", "2.0-1", &[(FOO_UNIT, unit)], &[], None)],
    );
    run(dpkg(&w)
        .arg("--force-script-chrootless")
        .arg("-r")
        .arg("bar"));
    std::fs::remove_file(w.root.join("etc/pam.d/imap")).unwrap();
    std::fs::remove_file(w.root.join(FOO_UNIT.trim_start_matches('/'))).unwrap();
    assert!(!w.root.join(OLD_UNIT.trim_start_matches('/')).exists());
    assert!(!w.root.join(BAR_UNIT.trim_start_matches('/')).exists());

    let (code, plan) = guard(&w.root, &w.store, &["restore", "--vanished", "--dry-run"]);
    assert_eq!(code, 0, "{plan:#}");
    let item = |p: &str| {
        plan["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["path"] == p)
            .unwrap_or_else(|| panic!("{p} in the plan: {plan:#}"))
            .clone()
    };
    assert_eq!(
        item(OLD_UNIT)["dropped"],
        serde_json::json!({"by": [{"package": "foo", "from": "1.0-1", "to": "2.0-1"}]}),
        "{plan:#}"
    );
    assert_eq!(
        item(BAR_UNIT)["dropped"],
        serde_json::json!({"by": [{"package": "bar", "from": "1.0-1", "to": null}]}),
        "{plan:#}"
    );
    for p in ["/etc/pam.d/imap", FOO_UNIT] {
        assert_eq!(item(p)["dropped"], Value::Null, "{p}: {plan:#}");
    }

    // the text plan says it on each line, and how many (a dry run's plan
    // is its output, on stdout)
    let (code, err, stderr) = guard_text(&w, &["restore", "--vanished", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    let line = |p: &str| {
        err.lines()
            .find(|l| l.contains(&format!(" {p} ")))
            .unwrap_or_else(|| panic!("{p} in {err}"))
            .to_string()
    };
    assert!(
        line(OLD_UNIT).ends_with("(dropped by foo 1.0-1 -> 2.0-1)"),
        "{err}"
    );
    assert!(line(BAR_UNIT).ends_with("(bar removed)"), "{err}");
    assert!(!line("/etc/pam.d/imap").contains("dropped"), "{err}");
    assert!(!line(FOO_UNIT).contains("dropped"), "{err}");
    assert!(
        err.contains("2 of these 4 items are paths their packages dropped on purpose"),
        "{err}"
    );

    // --yes without a terminal: every vanished path, as before, told first
    let (code, out, err) = guard_text(&w, &["--yes", "restore", "--vanished"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("2 of these 4 items are paths their packages dropped on purpose"),
        "{err}"
    );
    for p in ["/etc/pam.d/imap", OLD_UNIT, FOO_UNIT, BAR_UNIT] {
        assert!(w.root.join(p.trim_start_matches('/')).exists(), "{p}");
    }
}

/// Version 1 of `mta`'s postinst links `/etc/mta/makedefs.out` to the
/// package's `/usr/share/mta/makedefs.out` (as bookworm's postfix did);
/// version 2's removes the link, while the file stays. That is no admin's
/// loss: `check` makes it a warning that says why, and the restore plan
/// marks it. A link the admin made to a file of a package that did not
/// change, lost in the same upgrade, stays critical and unmarked.
#[test]
fn dpkg_a_link_a_postinst_made_and_the_next_version_removed_is_no_admins_loss() {
    let w = world();
    dpkg_root(&w);
    let data = ("/usr/share/mta/makedefs.out", "CC=gcc\n");
    let link = "/etc/mta/makedefs.out";
    let make = "#!/bin/sh\nset -e\nmkdir -p \"$DPKG_ROOT/etc/mta\"\n\
                [ -e \"$DPKG_ROOT/etc/mta/makedefs.out\" ] || \
                ln -s /usr/share/mta/makedefs.out \"$DPKG_ROOT/etc/mta/makedefs.out\"\n";
    let unmake = "#!/bin/sh\nset -e\n[ ! -L \"$DPKG_ROOT/etc/mta/makedefs.out\" ] || \
                  rm -f \"$DPKG_ROOT/etc/mta/makedefs.out\"\n";
    dpkg_install(
        &w,
        &[
            deb(&w, "mta", "1.0-1", &[data], &[], Some(make)),
            deb(
                &w,
                "other",
                "1.0-1",
                &[("/usr/share/other/data", "x\n")],
                &[],
                None,
            ),
        ],
    );
    assert!(w.root.join("etc/mta/makedefs.out").is_symlink());
    // the admin's own link, to a file of a package that will not change
    std::os::unix::fs::symlink("/usr/share/other/data", w.root.join("etc/mta/mine.out")).unwrap();
    let (code, snap) = guard(&w.root, &w.store, &["snapshot"]);
    assert_eq!(code, 0, "{snap}");
    let (_, show) = guard(&w.root, &w.store, &["show", snap["id"].as_str().unwrap()]);
    assert!(
        show["owners"][link].is_null(),
        "no package owns the link: {show:#}"
    );

    dpkg_install(&w, &[deb(&w, "mta", "2.0-1", &[data], &[], Some(unmake))]);
    assert!(!w.root.join("etc/mta/makedefs.out").is_symlink());
    assert!(w.root.join("usr/share/mta/makedefs.out").is_file());
    std::fs::remove_file(w.root.join("etc/mta/mine.out")).unwrap();

    let (code, check) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(code, 2, "the admin's link is still critical: {check:#}");
    let f = one(&check, &["file/vanished"], link);
    assert_eq!(f["severity"], "warning", "{f:#}");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("a link of no package to /usr/share/mta/makedefs.out, a file of mta")
            && msg.contains("mta 1.0-1 -> 2.0-1")
            && msg.contains("maintainer scripts make and remove such links"),
        "{f:#}"
    );
    assert_eq!(f["fix"], format!("guard restore {link}"));
    let mine = one(&check, &["file/vanished"], "/etc/mta/mine.out");
    assert_eq!(mine["severity"], "critical", "{mine:#}");

    let (code, plan) = guard(&w.root, &w.store, &["restore", "--vanished", "--dry-run"]);
    assert_eq!(code, 0, "{plan:#}");
    let items = plan["items"].as_array().expect("items");
    let item = |p: &str| items.iter().find(|i| i["path"] == p).unwrap().clone();
    assert_eq!(
        item(link)["dropped"],
        serde_json::json!({
            "by": [{"package": "mta", "from": "1.0-1", "to": "2.0-1"}],
            "link_to": "/usr/share/mta/makedefs.out",
        }),
        "{plan:#}"
    );
    assert_eq!(
        item("/etc/mta/mine.out")["dropped"],
        Value::Null,
        "{plan:#}"
    );
}

/// A file no package owns that a maintainer script rewrites on upgrade
/// (as pam-auth-update rewrites `/etc/pam.d/common-*`, update-shells
/// `/etc/shells`) is reported as an admin's own modified file: the finding
/// now says it was written during the dpkg run, as dpkg's log records it.
/// The admin's own file, edited before the upgrade, is not said to be.
#[test]
fn dpkg_a_file_a_maintainer_script_rewrote_says_so() {
    let w = world();
    dpkg_root(&w);
    let writes = |v: &str| {
        format!("#!/bin/sh\nset -e\necho 'generated {v}' > \"$DPKG_ROOT/etc/gen.conf\"\n")
    };
    dpkg_install(&w, &[deb(&w, "gen", "1.0-1", &[], &[], Some(&writes("1")))]);
    write(&w.root.join("etc/mine.conf"), "mine 1\n");
    let (code, snap) = guard(&w.root, &w.store, &["snapshot"]);
    assert_eq!(code, 0, "{snap}");
    // the admin's edit, an hour before the upgrade
    write(&w.root.join("etc/mine.conf"), "mine 2\n");
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 3600;
    set_mtime(&w.root.join("etc/mine.conf"), hour_ago, 0);
    dpkg_install(&w, &[deb(&w, "gen", "2.0-1", &[], &[], Some(&writes("2")))]);
    assert_eq!(
        std::fs::read_to_string(w.root.join("etc/gen.conf")).unwrap(),
        "generated 2\n"
    );

    let (_, check) = guard(&w.root, &w.store, &["check"]);
    let gen = one(&check, &["file/modified"], "/etc/gen.conf");
    let msg = gen["message"].as_str().unwrap();
    assert!(
        msg.contains("owned by no package, but written during the dpkg run of ")
            && msg.ends_with("(dpkg.log): a maintainer script or trigger rewrote it)"),
        "{gen:#}\n{}\n{}",
        std::fs::read_to_string(w.root.join("var/log/dpkg.log")).unwrap(),
        run(cmd("stat", [w.root.join("etc/gen.conf")]))
    );
    assert_eq!(gen["severity"], "warning", "{gen:#}");
    let mine = one(&check, &["file/modified"], "/etc/mine.conf");
    assert!(
        mine["message"]
            .as_str()
            .unwrap()
            .ends_with("(owned by no package: an admin's own file)"),
        "{mine:#}"
    );
}

/// A finding that names no path (`pkg/unfinished`, `pkg/changed`) could
/// not be acknowledged: `--ack` took only FINDING:PATH, and an empty path
/// was refused, so a known unfinished package kept the check at WARNING
/// for good. It is acknowledged by its id, pinned to what it says now, and
/// stops raising the exit code like any acknowledged finding.
#[test]
fn findings_without_a_path_are_acknowledged_by_their_id() {
    let w = world();
    dpkg_root_with_foo(&w);
    snapshot_id(&w, "pre");
    // the real dpkg, stopped between unpacking and configuring
    run(dpkg(&w)
        .arg("--unpack")
        .arg(dpkg_deb(&w, "2.0", MAIN_V1, CTL_V2, true)));
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(code, 1, "{v:#}");
    for id in ["pkg/unfinished", "pkg/changed"] {
        let f = with_id(&v, id);
        assert_eq!(f.len(), 1, "{id}: {v:#}");
        assert_eq!(f[0]["paths"], serde_json::json!([]), "{v:#}");
    }
    // the other warnings (the unpacked conffiles wait to be merged) name
    // their paths: acknowledged as ever, and not by their id alone
    let (code, e) = guard(&w.root, &w.store, &["check", "--ack", "pkg/pending-merge"]);
    assert_eq!(code, 3, "{e:#}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("--ack pkg/pending-merge:PATH"),
        "{e:#}"
    );
    for f in findings(&v) {
        if f["severity"] == "warning" && f["id"] != "pkg/unfinished" {
            let spec = format!(
                "{}:{}",
                f["id"].as_str().unwrap(),
                f["paths"][0].as_str().unwrap()
            );
            let (code, v) = guard(&w.root, &w.store, &["check", "--ack", &spec]);
            assert_eq!(code, 0, "{spec}: {v:#}");
        }
    }
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(code, 1, "only pkg/unfinished is left: {v:#}");
    let (code, v) = guard(
        &w.root,
        &w.store,
        &["check", "--ack", "pkg/unfinished", "--ack", "pkg/changed"],
    );
    assert_eq!(code, 0, "{v:#}");
    let pathless: Vec<_> = v["acks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["path"] == "")
        .map(|a| a["finding"].as_str().unwrap())
        .collect();
    assert_eq!(pathless, ["pkg/unfinished", "pkg/changed"], "{v:#}");
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(code, 0, "acknowledged, it counts as info: {v:#}");
    assert_eq!(
        with_id(&v, "pkg/unfinished")[0]["acknowledged"],
        true,
        "{v:#}"
    );
    assert_eq!(with_id(&v, "pkg/changed")[0]["acknowledged"], true, "{v:#}");
    // a path where the finding names none picks out nothing
    let (code, v) = guard(
        &w.root,
        &w.store,
        &["check", "--ack", "pkg/unfinished:/etc/foo"],
    );
    assert_eq!(code, 3, "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("there is no pkg/unfinished finding for /etc/foo now"),
        "{v:#}"
    );
    // taken back by its id too
    let (code, v) = guard(&w.root, &w.store, &["check", "--unack", "pkg/unfinished"]);
    assert_eq!(code, 0, "{v:#}");
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(code, 1, "{v:#}");
    assert_ne!(
        with_id(&v, "pkg/unfinished")[0]["acknowledged"],
        true,
        "{v:#}"
    );
}

/// A package purged with the real `dpkg --purge`: its configuration
/// directory goes with it. The finding said "/etc/foo vanished with 3
/// entries beneath it (0 owned by no package)", leaving a tired admin to
/// work out that nothing of theirs was in it and why it went; now it says
/// both, as the finding of a single file does.
#[test]
fn dpkg_purged_package_config_dir_says_the_package_was_removed() {
    let w = world();
    dpkg_root_with_foo(&w);
    snapshot_id(&w, "manual");
    run(dpkg(&w).arg("--purge").arg("foo"));
    assert!(!w.root.join("etc/foo").exists());
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(code, 1, "{v:#}");
    let dir = findings_for(&v, "/etc/foo");
    assert_eq!(dir.len(), 1, "{v:#}");
    assert_eq!(dir[0]["id"], "file/vanished");
    assert_eq!(dir[0]["severity"], "warning");
    let msg = dir[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("/etc/foo vanished with 2 entries beneath it")
            && msg.ends_with("(none of them an admin's own file; foo removed)"),
        "{msg}"
    );

    // an admin's own file in it is counted as theirs, and decides
    let w = world();
    dpkg_root_with_foo(&w);
    write(&w.root.join("etc/foo/local.conf"), "relay = mx.example\n");
    snapshot_id(&w, "manual");
    run(dpkg(&w).arg("--purge").arg("foo"));
    // dpkg leaves a directory holding a file of no package: remove it all
    std::fs::remove_dir_all(w.root.join("etc/foo")).unwrap();
    let (code, v) = guard(&w.root, &w.store, &["check"]);
    assert_eq!(code, 2, "{v:#}");
    let msg = findings_for(&v, "/etc/foo")[0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.ends_with("(1 file owned by no package: an admin's own; foo removed)"),
        "{msg}"
    );
}
