//! The stale-keyring incident (DESIGN §1.4) for real: a root with pacman, a
//! keyring built with gpg, a file:// repo whose new package is signed by a
//! key the root's keyring holds but does not trust, and a newer keyring
//! package (signed by a trusted key) that trusts it. `guard run arch-upgrade`
//! must detect the signature failure, refresh the keyring first and upgrade;
//! the same walk without the keyring steps must stop on the failed upgrade.

// Tests build their fixtures (keys, packages, repos) with the real tools
// directly; the exec.rs choke point is for guard itself.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir")
        .arg(home)
        .args(["--batch", "--no-tty", "--quiet"]);
    c
}

fn new_key(home: &Path, uid: &str) -> String {
    run(gpg(home).args([
        "--passphrase",
        "",
        "--quick-gen-key",
        uid,
        "ed25519",
        "sign",
        "never",
    ]));
    let out = run(gpg(home).args(["--with-colons", "--list-keys", uid]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_string())
        })
        .expect("fingerprint")
}

/// makepkg refuses root: it runs as `nobody`, so the test needs no account
/// of its own in the host's /etc/passwd.
const NOBODY: &str = "65534";

struct Agent(PathBuf);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.0)
            .args(["--kill", "all"])
            .output();
    }
}

/// Builds a package with makepkg as the unprivileged `user`.
fn build(user: &str, dir: &Path, name: &str, ver: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = dir.join(format!("{name}-{ver}"));
    std::fs::create_dir_all(&d).unwrap();
    let mut body = String::new();
    for (i, (dest, content)) in files.iter().enumerate() {
        std::fs::write(d.join(format!("f{i}")), content).unwrap();
        body.push_str(&format!(
            "  install -Dm644 \"$startdir/f{i}\" \"$pkgdir{dest}\"\n"
        ));
    }
    std::fs::write(
        d.join("PKGBUILD"),
        format!(
            "pkgname={name}\npkgver={ver}\npkgrel=1\npkgdesc='guard test'\narch=('any')\nlicense=('MIT')\noptions=(!strip !debug)\npackage() {{\n{body}}}\n"
        ),
    )
    .unwrap();
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:{user}"))
        .arg(&d));
    run(Command::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .args(["--clear-groups", "--", "makepkg", "--nodeps", "--force"])
        .current_dir(&d)
        .env("HOME", &d)
        .env("PKGDEST", &d)
        .env("SRCDEST", &d)
        .env("BUILDDIR", d.join("build"))
        .env("PKGEXT", ".pkg.tar.zst"));
    d.join(format!("{name}-{ver}-1-any.pkg.tar.zst"))
}

fn sign(keys: &Path, fpr: &str, pkg: &Path) {
    run(gpg(keys)
        .args([
            "--local-user",
            fpr,
            "--detach-sign",
            "--no-armor",
            "--output",
        ])
        .arg(pkg.with_extension("zst.sig"))
        .arg(pkg));
}

struct Pkgs {
    hello1: PathBuf,
    keyring1: PathBuf,
    hello2: PathBuf,
    keyring2: PathBuf,
    keys: PathBuf,
    fpr_old: String,
    fpr_new: String,
    fpr_bad: String,
}

fn pacman(root: &Path) -> Command {
    let mut c = Command::new("pacman");
    c.arg("--root")
        .arg(root)
        .arg("--config")
        .arg(root.join("etc/pacman.conf"))
        .arg("--dbpath")
        .arg(root.join("var/lib/pacman"))
        .arg("--cachedir")
        .arg(root.join("var/cache/pacman/pkg"))
        .arg("--gpgdir")
        .arg(root.join("etc/pacman.d/gnupg"))
        .arg("--logfile")
        .arg(root.join("var/log/pacman.log"));
    c
}

/// A root with hello 1.0 and keyring 1 installed; its keyring trusts the
/// old packager key and holds (without trusting) the new one.
fn make_root(base: &Path, p: &Pkgs) -> (PathBuf, Agent) {
    let root = base.join("root");
    for d in [
        "etc/pacman.d/gnupg",
        "var/lib/pacman",
        "var/cache/pacman/pkg",
        "var/log",
        "srv/repo",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(
        root.join("etc/os-release"),
        "ID=arch\nNAME=\"Arch Linux\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/pacman.conf"),
        format!(
            "[options]\nArchitecture = auto\nSigLevel = Required DatabaseOptional\nLocalFileSigLevel = Optional\n\n[guardtest]\nServer = file://{}\n",
            root.join("srv/repo").display()
        ),
    )
    .unwrap();
    let g = root.join("etc/pacman.d/gnupg");
    run(Command::new("chmod").arg("700").arg(&g));
    let agent = Agent(g.clone());
    // As `pacman-key --init` leaves it: the legacy pubring.gpg format, which
    // pacman-key checks for (gpg uses it instead of a keybox when present).
    for f in ["pubring.gpg", "trustdb.gpg"] {
        std::fs::write(g.join(f), b"").unwrap();
    }
    new_key(&g, "Pacman Keyring Master Key <pacman@localhost>");
    let exported = run(gpg(&p.keys).args(["--export", &p.fpr_old, &p.fpr_new, &p.fpr_bad]));
    run(gpg(&g)
        .arg("--import")
        .arg(write(base, "pub.gpg", &exported.stdout)));
    // Old key: locally signed by the master key, so valid. New key: known,
    // not signed: "unknown trust", the state of a stale keyring.
    run(gpg(&g).args(["--yes", "--quick-lsign-key", &p.fpr_old]));
    // A key trusted until the new keyring revokes it.
    run(gpg(&g).args(["--yes", "--quick-lsign-key", &p.fpr_bad]));
    run(pacman(&root)
        .args(["-U", "--noconfirm"])
        .arg(&p.hello1)
        .arg(&p.keyring1));
    for f in [&p.hello2, &p.keyring2] {
        for src in [f.clone(), f.with_extension("zst.sig")] {
            std::fs::copy(&src, root.join("srv/repo").join(src.file_name().unwrap())).unwrap();
        }
    }
    run(Command::new("repo-add")
        .arg(root.join("srv/repo/guardtest.db.tar.gz"))
        .arg(root.join("srv/repo").join(p.hello2.file_name().unwrap()))
        .arg(root.join("srv/repo").join(p.keyring2.file_name().unwrap())));
    (root, agent)
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn hello_version(root: &Path) -> String {
    std::fs::read_to_string(root.join("usr/share/hello/version")).unwrap()
}

#[test]
fn arch_upgrade_refreshes_a_stale_keyring_first() {
    let tmp = tempfile::Builder::new()
        .prefix("guard-pb-kr")
        .tempdir()
        .unwrap();
    let base = tmp.path();
    run(Command::new("chmod").arg("755").arg(base));
    let keys = base.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    run(Command::new("chmod").arg("700").arg(&keys));
    let _keys_agent = Agent(keys.clone());
    let fpr_old = new_key(&keys, "Old Packager <old@guard.test>");
    let fpr_new = new_key(&keys, "New Packager <new@guard.test>");
    let fpr_bad = new_key(&keys, "Revoked Packager <bad@guard.test>");
    let build_dir = base.join("build");
    std::fs::create_dir_all(&build_dir).unwrap();
    run(Command::new("chown")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(&build_dir));
    let hello1 = build(
        NOBODY,
        &build_dir,
        "hello",
        "1.0",
        &[("/usr/share/hello/version", "1.0\n")],
    );
    let hello2 = build(
        NOBODY,
        &build_dir,
        "hello",
        "2.0",
        &[("/usr/share/hello/version", "2.0\n")],
    );
    // Keyring files are binary; ship the new one as an armored export.
    let both_armored = run(gpg(&keys).args(["--armor", "--export", &fpr_old, &fpr_new])).stdout;
    let old_armored = run(gpg(&keys).args(["--armor", "--export", &fpr_old])).stdout;
    let t1 = format!("{fpr_old}:4:\n");
    let t2 = format!("{fpr_old}:4:\n{fpr_new}:4:\n");
    let revoked = format!("{fpr_bad}\n");
    let oa = String::from_utf8(old_armored).unwrap();
    let ba = String::from_utf8(both_armored).unwrap();
    let keyring1 = build(
        NOBODY,
        &build_dir,
        "archlinux-keyring",
        "1",
        &[
            ("/usr/share/pacman/keyrings/archlinux.gpg", &oa),
            ("/usr/share/pacman/keyrings/archlinux-trusted", &t1),
        ],
    );
    let keyring2 = build(
        NOBODY,
        &build_dir,
        "archlinux-keyring",
        "2",
        &[
            ("/usr/share/pacman/keyrings/archlinux.gpg", &ba),
            ("/usr/share/pacman/keyrings/archlinux-trusted", &t2),
            ("/usr/share/pacman/keyrings/archlinux-revoked", &revoked),
        ],
    );
    for p in [&hello1, &keyring1, &keyring2] {
        sign(&keys, &fpr_old, p);
    }
    // The new package is signed by the packager key the root does not trust.
    sign(&keys, &fpr_new, &hello2);
    let pkgs = Pkgs {
        hello1,
        keyring1,
        hello2,
        keyring2,
        keys: keys.clone(),
        fpr_old,
        fpr_new,
        fpr_bad,
    };
    // (root-playbook: the override below is a file of the test root, not
    // `/`, and walked only when the admin says so)
    let answers = write(
        base,
        "answers.toml",
        b"[answers]\nkeyring_stale = \"no\"\nroot-playbook = \"walk\"\n",
    );

    // 1. Without the keyring steps (a local override of the playbook), the
    //    same upgrade fails and the walk stops hard.
    let without = base.join("without");
    std::fs::create_dir_all(&without).unwrap();
    let (root, _agent) = make_root(&without, &pkgs);
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/arch-upgrade.toml"),
    )
    .unwrap();
    let kept: Vec<&str> = shipped
        .split("[[steps]]")
        .filter(|s| !s.contains("id = \"keyring\"") && !s.contains("id = \"keyring-populate\""))
        .collect();
    std::fs::create_dir_all(root.join("etc/guard/playbooks")).unwrap();
    std::fs::write(
        root.join("etc/guard/playbooks/arch-upgrade.toml"),
        kept.join("[[steps]]"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_guard"))
        .arg("--root")
        .arg(&root)
        .arg("--store")
        .arg(without.join("store"))
        .args(["--yes", "run", "arch-upgrade", "--answers"])
        .arg(&answers)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("step upgrade (Upgrade the system) failed"),
        "{err}"
    );
    assert!(err.contains("unknown trust"), "{err}");
    assert!(err.contains("what to do next"), "{err}");
    assert_eq!(hello_version(&root), "1.0\n", "hello must not be upgraded");
    // "Delete the corrupted package?" was answered no: still in the cache.
    assert!(root
        .join("var/cache/pacman/pkg")
        .join(pkgs.hello2.file_name().unwrap())
        .exists());

    // 2. The shipped playbook: detects the failure, refreshes the keyring
    //    first, then upgrades.
    let with = base.join("with");
    std::fs::create_dir_all(&with).unwrap();
    let (root, _agent2) = make_root(&with, &pkgs);
    let out = Command::new(env!("CARGO_BIN_EXE_guard"))
        .arg("--root")
        .arg(&root)
        .arg("--store")
        .arg(with.join("store"))
        .args(["--yes", "run", "arch-upgrade", "--answers"])
        .arg(&answers)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("sig_failure = yes"), "{err}");
    assert_eq!(hello_version(&root), "2.0\n");
    let journal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(with.join("store/journals/arch-upgrade.json")).unwrap(),
    )
    .unwrap();
    let status = |id: &str| {
        journal["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    for id in [
        "snapshot",
        "probe-signatures",
        "keyring",
        "keyring-populate",
        "upgrade",
        "check",
    ] {
        assert_eq!(status(id), "done", "{id}: {journal:#}");
    }
    assert!(journal["finished"].is_string());
    // The keyring step ran before the upgrade.
    let order: Vec<&str> = journal["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let pos = |id| order.iter().position(|x| *x == id).unwrap();
    assert!(pos("keyring") < pos("upgrade"));
    // The key the new keyring revokes is disabled (capability field has D).
    let g = root.join("etc/pacman.d/gnupg");
    let out = run(gpg(&g).args(["--with-colons", "--list-keys", &pkgs.fpr_bad]));
    let listing = String::from_utf8_lossy(&out.stdout);
    let caps = listing
        .lines()
        .find(|l| l.starts_with("pub:"))
        .and_then(|l| l.split(':').nth(11))
        .unwrap_or_default()
        .to_string();
    assert!(caps.contains('D'), "revoked key not disabled: {listing}");
    let out = run(gpg(&g).args(["--with-colons", "--list-keys", &pkgs.fpr_new]));
    assert!(!String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("pub:"))
        .unwrap()
        .split(':')
        .nth(11)
        .unwrap()
        .contains('D'));
}
