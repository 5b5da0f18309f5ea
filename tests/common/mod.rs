//! Shared helpers for the end-to-end tests of `guard check`: a temporary
//! root and store, and the binary run on them with no terminal.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// An answers file that says to walk a playbook of the test root's own
/// (`root-playbook = "walk"`): the test roots are not `/` (README).
pub fn root_playbook_answers() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, b"[answers]\nroot-playbook = \"walk\"\n").unwrap();
    f
}

pub struct Sys {
    pub dir: tempfile::TempDir,
    pub store: tempfile::TempDir,
}

impl Sys {
    pub fn new() -> Sys {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        Sys {
            dir,
            store: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    pub fn write(&self, p: &str, text: &str) -> &Sys {
        let h = self.path(p);
        std::fs::create_dir_all(h.parent().unwrap()).unwrap();
        std::fs::write(&h, text).unwrap();
        self
    }

    pub fn chmod(&self, p: &str, mode: u32) {
        std::fs::set_permissions(self.path(p), std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn rm(&self, p: &str) {
        let h = self.path(p);
        if h.is_dir() {
            std::fs::remove_dir_all(h).unwrap();
        } else {
            std::fs::remove_file(h).unwrap();
        }
    }

    pub fn symlink(&self, target: &str, p: &str) {
        let h = self.path(p);
        std::fs::create_dir_all(h.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, h).unwrap();
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("guard").unwrap();
        c.arg("--root")
            .arg(self.root())
            .arg("--store")
            .arg(self.store.path())
            .arg("--no-progress")
            .env_remove("GUARD_ROOT")
            .env_remove("GUARD_STORE");
        c
    }

    /// `guard ARGS…` on this root and store, which must succeed.
    pub fn ok(&self, args: &[&str]) -> std::process::Output {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "guard {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn snapshot(&self) {
        self.cmd()
            .args(["snapshot", "--label", "baseline"])
            .assert()
            .success();
    }

    /// `guard check --json`: (exit code, document).
    pub fn check(&self) -> (i32, Value) {
        let out = self.cmd().args(["check", "--json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap(), v)
    }

    /// `guard check` as text: (exit code, stdout).
    pub fn check_text(&self) -> (i32, String) {
        let out = self.cmd().arg("check").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // the text report is for an 80-column terminal
        for l in text.lines() {
            assert!(l.chars().count() <= 80, "wider than 80 columns: {l:?}");
        }
        (out.status.code().unwrap(), text)
    }

    /// The first line of the text report: the verdict.
    pub fn verdict(&self) -> String {
        let (_, text) = self.check_text();
        text.lines().next().unwrap_or_default().to_string()
    }
}

/// Findings with this id.
pub fn with_id<'a>(v: &'a Value, id: &str) -> Vec<&'a Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id)
        .collect()
}

/// Findings naming this path.
pub fn for_path<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["paths"].as_array().unwrap().iter().any(|p| p == path))
        .collect()
}

/// Runs a command that must exist and succeed (tests fail, never skip,
/// when a tool the test script installs is missing).
pub fn run(argv: &[&str]) -> String {
    let out = guard::exec::output(&guard::exec::Cmd::new(argv[0]).args(&argv[1..]))
        .unwrap_or_else(|e| panic!("{} is needed by this test: {e:#}", argv[0]));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Mounts a tmpfs of `size` on `dir` (made if missing): a small one is a
/// disk that fills up, for the ENOSPC tests. Needs root, as CI runs.
pub fn mount_tmpfs(dir: &Path, size: &str) {
    std::fs::create_dir_all(dir).unwrap();
    guard::exec::stdout_of(
        &guard::exec::Cmd::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(dir),
    )
    .expect("mounting a tmpfs needs root (CI runs as root)");
}

/// Unmounts (lazily) what [`mount_tmpfs`] mounted when dropped, whatever
/// becomes of the test.
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = guard::exec::output(&guard::exec::Cmd::new("umount").arg("-l").arg(&self.0));
    }
}
