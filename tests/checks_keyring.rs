//! Incident 4 end to end: an Arch root whose sync database holds packages
//! signed by a key its pacman keyring does not hold (or does not trust),
//! built with real gpg signatures and a real bsdtar database, and
//! signature failures in pacman.log since the snapshot.

mod common;
use common::*;

use std::path::Path;

struct Signer {
    home: tempfile::TempDir,
}

impl Signer {
    fn new() -> Signer {
        let home = tempfile::tempdir().unwrap();
        Signer { home }
    }
    fn gpg(&self, args: &[&str]) -> String {
        let mut argv = vec![
            "gpg",
            "--homedir",
            self.home.path().to_str().unwrap(),
            "--batch",
            "--no-tty",
        ];
        argv.extend(args);
        run(&argv)
    }
    /// Generates a signing key; its fingerprint.
    fn key(&self, uid: &str) -> String {
        self.gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ]);
        let out = self.gpg(&["--with-colons", "--list-keys", uid]);
        out.lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string()
    }
    fn sign_b64(&self, fpr: &str, data: &Path) -> String {
        let sig = data.with_extension("sig");
        self.gpg(&[
            "--local-user",
            fpr,
            "--output",
            sig.to_str().unwrap(),
            "--detach-sign",
            data.to_str().unwrap(),
        ]);
        run(&["base64", "-w0", sig.to_str().unwrap()])
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = guard::exec::output(&guard::exec::Cmd::new("gpgconf").args([
            "--homedir",
            self.home.path().to_str().unwrap(),
            "--kill",
            "all",
        ]));
    }
}

/// Root keyring made the way Arch makes it, with pacman-key: `trusted`
/// is locally signed by the keyring's master key (full validity, as
/// `pacman-key --populate` leaves the packager keys), `known` is only added.
fn keyring(s: &Sys, signer: &Signer, trusted: &str, known: &str) {
    let home = s.path("/etc/pacman.d/gnupg");
    let h = home.to_str().unwrap();
    run(&["pacman-key", "--gpgdir", h, "--init"]);
    for fpr in [trusted, known] {
        let pubkey = s.root().join(format!("{fpr}.asc"));
        signer.gpg(&[
            "--armor",
            "--output",
            pubkey.to_str().unwrap(),
            "--export",
            fpr,
        ]);
        run(&[
            "pacman-key",
            "--gpgdir",
            h,
            "--add",
            pubkey.to_str().unwrap(),
        ]);
        std::fs::remove_file(pubkey).unwrap();
    }
    run(&["pacman-key", "--gpgdir", h, "--lsign-key", trusted]);
    let _ = guard::exec::output(&guard::exec::Cmd::new("gpgconf").args([
        "--homedir",
        h,
        "--kill",
        "all",
    ]));
}

/// core.db with one package per (name, signer).
fn sync_db(s: &Sys, signer: &Signer, pkgs: &[(&str, &str)]) {
    let work = tempfile::tempdir().unwrap();
    for (name, fpr) in pkgs {
        let payload = work.path().join(format!("{name}.pkg"));
        std::fs::write(&payload, format!("package {name}")).unwrap();
        let sig = signer.sign_b64(fpr, &payload);
        let dir = work.path().join("db").join(format!("{name}-1.0-1"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("desc"),
            format!(
                "%FILENAME%\n{name}-1.0-1-x86_64.pkg.tar.zst\n\n%NAME%\n{name}\n\n\
                 %VERSION%\n1.0-1\n\n%PGPSIG%\n{sig}\n\n"
            ),
        )
        .unwrap();
    }
    std::fs::create_dir_all(s.path("/var/lib/pacman/sync")).unwrap();
    run(&[
        "bsdtar",
        "-czf",
        s.path("/var/lib/pacman/sync/core.db").to_str().unwrap(),
        "-C",
        work.path().join("db").to_str().unwrap(),
        ".",
    ]);
}

#[test]
fn packages_signed_by_unknown_or_untrusted_keys_are_critical() {
    let signer = Signer::new();
    let master = signer.key("Master <master@example.org>");
    let stranger = signer.key("New Packager <new@example.org>");
    let untrusted = signer.key("Untrusted <u@example.org>");
    let s = Sys::new();
    keyring(&s, &signer, &master, &untrusted);
    sync_db(
        &s,
        &signer,
        &[
            ("linux", &stranger),
            ("glibc", &stranger),
            ("bash", &master),
            ("vim", &untrusted),
        ],
    );
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "keyring/stale");
    assert_eq!(f.len(), 1, "{v:#}");
    let msg = f[0]["message"].as_str().unwrap();
    assert!(msg.contains("3 packages"), "{msg}");
    assert!(
        msg.contains(&stranger[24..]),
        "names the unknown key id: {msg}"
    );
    assert!(
        msg.contains(&untrusted[24..]),
        "names the untrusted key id: {msg}"
    );
    assert!(!msg.contains(&master[24..]), "{msg}");
    let d = f[0]["detail"].as_str().unwrap();
    assert!(d.contains("glibc linux"), "{d}");
    let fix = f[0]["fix"].as_str().unwrap();
    assert!(
        fix.starts_with("pacman -Sy archlinux-keyring && pacman -Su"),
        "{fix}"
    );
    assert!(fix.contains("answer no"), "{fix}");
    // the root's keyring was only read
    assert!(!s.path("/etc/pacman.d/gnupg/.#lk").exists());
}

#[test]
fn downloaded_package_signatures_count_too() {
    let signer = Signer::new();
    let master = signer.key("Master <master@example.org>");
    let stranger = signer.key("New Packager <new@example.org>");
    let s = Sys::new();
    keyring(&s, &signer, &master, &master);
    s.snapshot();
    let cache = s.path("/var/cache/pacman/pkg");
    std::fs::create_dir_all(&cache).unwrap();
    let pkg = cache.join("linux-6.9-1-x86_64.pkg.tar.zst");
    std::fs::write(&pkg, "payload").unwrap();
    let sig = signer.sign_b64(&stranger, &pkg); // writes linux-….pkg.tar.sig
    assert!(!sig.is_empty());
    std::fs::rename(
        pkg.with_extension("sig"),
        cache.join("linux-6.9-1-x86_64.pkg.tar.zst.sig"),
    )
    .unwrap();
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "keyring/stale");
    assert!(
        f[0]["message"].as_str().unwrap().contains("1 package "),
        "{v:#}"
    );
    assert!(
        f[0]["detail"].as_str().unwrap().contains("linux-6.9-1"),
        "{v:#}"
    );
}

#[test]
fn a_keyring_that_knows_every_signer_gives_no_finding() {
    let signer = Signer::new();
    let master = signer.key("Master <master@example.org>");
    let other = signer.key("Other <o@example.org>");
    let s = Sys::new();
    keyring(&s, &signer, &master, &other);
    sync_db(&s, &signer, &[("bash", &master), ("zsh", &master)]);
    let (code, v) = s.check();
    assert!(with_id(&v, "keyring/stale").is_empty(), "{v:#}");
    assert!(with_id(&v, "keyring/unreadable").is_empty(), "{v:#}");
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn signature_failures_logged_since_the_snapshot() {
    let s = Sys::new();
    s.write(
        "/var/log/pacman.log",
        "[2019-03-01T10:00:00+0000] [ALPM] error: old: signature from \"X\" is unknown trust\n",
    );
    s.snapshot();
    let (_, v) = s.check();
    assert!(
        with_id(&v, "keyring/stale").is_empty(),
        "old lines do not count: {v:#}"
    );
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S+0000")
        .to_string();
    let mut log = std::fs::read_to_string(s.path("/var/log/pacman.log")).unwrap();
    log.push_str(&format!("[{now}] [PACMAN] Running 'pacman -Syu'\n"));
    log.push_str(&format!(
        "[{now}] [ALPM] error: linux: signature from \"Dev <d@x>\" is unknown trust\n"
    ));
    log.push_str(&format!(
        "[{now}] [ALPM] error: failed to commit transaction (invalid or corrupted package (PGP signature))\n"
    ));
    std::fs::write(s.path("/var/log/pacman.log"), log).unwrap();
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "keyring/stale");
    assert_eq!(f[0]["evidence"].as_array().unwrap().len(), 2, "{v:#}");
    assert_eq!(f[0]["evidence"][0]["line"], 3);
    let (_, text) = s.check_text();
    assert!(
        text.starts_with("1 critical: pacman -Syu will fail"),
        "{text}"
    );
}

#[test]
fn a_signature_downloaded_with_the_mirrors_old_mtime_counts_too() {
    let signer = Signer::new();
    let master = signer.key("Master <master@example.org>");
    let stranger = signer.key("New Packager <new@example.org>");
    let s = Sys::new();
    keyring(&s, &signer, &master, &master);
    s.snapshot();
    let cache = s.path("/var/cache/pacman/pkg");
    std::fs::create_dir_all(&cache).unwrap();
    let pkg = cache.join("glibc-2.40-1-x86_64.pkg.tar.zst");
    std::fs::write(&pkg, "payload").unwrap();
    signer.sign_b64(&stranger, &pkg);
    let sig = cache.join("glibc-2.40-1-x86_64.pkg.tar.zst.sig");
    std::fs::rename(pkg.with_extension("sig"), &sig).unwrap();
    // pacman gives a download the mirror's time, from before the snapshot
    run(&["touch", "-d", "2019-03-01 10:00", sig.to_str().unwrap()]);
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "keyring/stale");
    assert!(
        f[0]["detail"].as_str().unwrap().contains("glibc-2.40-1"),
        "{v:#}"
    );
}

#[test]
fn without_gpg_the_keyring_is_unknown_not_stale() {
    let signer = Signer::new();
    let master = signer.key("Master <master@example.org>");
    let s = Sys::new();
    keyring(&s, &signer, &master, &master);
    sync_db(&s, &signer, &[("bash", &master)]);
    // a PATH with bsdtar but no gpg
    let bin = tempfile::tempdir().unwrap();
    let bsdtar = run(&["sh", "-c", "command -v bsdtar"]);
    std::os::unix::fs::symlink(bsdtar.trim(), bin.path().join("bsdtar")).unwrap();
    let out = s
        .cmd()
        .env("PATH", bin.path())
        .args(["check", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(with_id(&v, "keyring/stale").is_empty(), "{v:#}");
    let u = with_id(&v, "keyring/unreadable");
    assert_eq!(u.len(), 1, "{v:#}");
    assert!(u[0]["detail"].as_str().unwrap().contains("gpg"), "{v:#}");
    assert_eq!(out.status.code(), Some(0), "{v:#}");
}

/// Refreshing the keyring (pacman-key, as archlinux-keyring's install
/// script and the arch-upgrade playbook's keyring step do) rewrites the
/// files of /etc/pacman.d/gnupg: the keyring brought up to date, not an
/// admin's file damaged, and `guard restore` of it would undo the refresh.
#[test]
fn a_refreshed_keyring_is_no_admins_file_to_restore() {
    let s = Sys::new();
    let signer = Signer::new();
    let trusted = signer.key("Old Packager <old@example.org>");
    let known = signer.key("New Packager <new@example.org>");
    keyring(&s, &signer, &trusted, &known);
    s.snapshot();
    let h = s.path("/etc/pacman.d/gnupg");
    run(&[
        "pacman-key",
        "--gpgdir",
        h.to_str().unwrap(),
        "--lsign-key",
        &known,
    ]);
    let _ = guard::exec::output(&guard::exec::Cmd::new("gpgconf").args([
        "--homedir",
        h.to_str().unwrap(),
        "--kill",
        "all",
    ]));
    let (code, v) = s.check();
    let keyring: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["paths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p.as_str().unwrap().starts_with("/etc/pacman.d/gnupg/"))
        })
        .collect();
    let modified: Vec<_> = keyring
        .iter()
        .filter(|f| f["id"] == "file/modified")
        .collect();
    assert!(!modified.is_empty(), "the refresh changed no file? {v:#}");
    for f in &keyring {
        assert_eq!(f["severity"], "info", "{f:#}");
        assert!(
            !f["fix"]
                .as_str()
                .unwrap_or_default()
                .contains("guard restore"),
            "{f:#}"
        );
    }
    for f in modified {
        assert!(
            f["message"]
                .as_str()
                .unwrap()
                .contains("the keyring pacman-key keeps"),
            "{f:#}"
        );
    }
    assert_eq!(code, 0, "{v:#}");
}
