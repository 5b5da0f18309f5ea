//! Helpers for end-to-end tests: run real tools (through `guard::exec`, the
//! one process spawner) and the built `guard` binary on a temporary root.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;

use guard::exec::{self, Cmd};
use serde_json::Value;

/// Runs a real tool; panics with its output when it fails (a missing tool
/// fails the test: scripts/test.sh installs them).
pub fn run(cmd: Cmd) -> String {
    let out = exec::output(&cmd).unwrap_or_else(|e| panic!("{}: {e:#}", cmd.display()));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}\n{}",
        cmd.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `guard --root ROOT --store STORE --yes --json ARGS…` → (exit code, JSON).
pub fn guard(root: &Path, store: &Path, args: &[&str]) -> (i32, Value) {
    guard_env(root, store, &[], args)
}

/// `guard --root ROOT --store STORE --no-progress ARGS…` as the admin runs
/// it (text, no `--json`): (exit code, stdout, stderr).
pub fn guard_text(root: &Path, store: &Path, args: &[&str]) -> (i32, String, String) {
    let out = guard::exec::output(
        &Cmd::new(env!("CARGO_BIN_EXE_guard"))
            .arg("--root")
            .arg(root)
            .arg("--store")
            .arg(store)
            .arg("--no-progress")
            .args(args),
    )
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`guard`] with extra environment variables.
pub fn guard_env(root: &Path, store: &Path, env: &[(&str, &Path)], args: &[&str]) -> (i32, Value) {
    let mut cmd = Cmd::new(env!("CARGO_BIN_EXE_guard"))
        .arg("--root")
        .arg(root)
        .arg("--store")
        .arg(store)
        .args(["--yes", "--json", "--no-progress"])
        .args(args);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = exec::output(&cmd).unwrap();
    let code = out.status.code().unwrap_or(-1);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            cmd.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}

/// The findings of a `check --json` document.
pub fn findings(check: &Value) -> &Vec<Value> {
    check["findings"].as_array().expect("findings is a list")
}

/// The findings that name `path`.
pub fn findings_for<'a>(check: &'a Value, path: &str) -> Vec<&'a Value> {
    findings(check)
        .iter()
        .filter(|f| {
            f["paths"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x == path))
        })
        .collect()
}

/// `getcap FILE` as printed, e.g. `/x/fooctl cap_net_bind_service=ep`.
pub fn getcap(file: &Path) -> String {
    run(Cmd::new("getcap").arg(file)).trim().to_string()
}

pub fn setcap(caps: &str, file: &Path) {
    run(Cmd::new("setcap").arg(caps).arg(file));
}

/// Everything `restore` must bring back, for comparing before and after.
#[derive(Debug, PartialEq, Eq)]
pub struct FileState {
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub xattrs: Vec<(String, Vec<u8>)>,
}

pub fn state(p: &Path) -> FileState {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(p).unwrap();
    FileState {
        content: std::fs::read(p).unwrap(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
        xattrs: xattrs(p),
    }
}

/// Every xattr of a file (names sorted), read with rustix.
pub fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut names).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = names[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let name = String::from_utf8_lossy(name).into_owned();
            let mut v = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(p, name.as_str(), &mut v).unwrap();
            v.truncate(len);
            (name, v)
        })
        .collect();
    out.sort();
    out
}

pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// Sets a file's mtime with nanoseconds (restore must keep them).
pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    use rustix::fs::{Timespec, Timestamps};
    let t = Timestamps {
        last_access: Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        },
        last_modification: Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// `Cmd` for a program with arguments given as `OsStr`s.
pub fn cmd<I, S>(program: &str, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Cmd::new(program).args(args)
}

/// Runs the real `makepkg` in `dir` (holding a PKGBUILD) as the
/// unprivileged user `nobody_id`, since makepkg refuses root; the packages
/// land in `dir`. The caller makes `dir` reachable for that user.
pub fn makepkg_as(nobody_id: u32, dir: &Path) {
    run(cmd("chown", ["-R", &format!("{nobody_id}:{nobody_id}")]).arg(dir));
    run(Cmd::new("setpriv")
        .arg(format!("--reuid={nobody_id}"))
        .arg(format!("--regid={nobody_id}"))
        .args(["--clear-groups", "--"])
        .args([
            "makepkg",
            "--nodeps",
            "--skipinteg",
            "--noconfirm",
            "--noprogressbar",
        ])
        .env("HOME", dir)
        .env("PKGEXT", ".pkg.tar.zst")
        .env("PKGDEST", dir)
        .cwd(dir));
}
