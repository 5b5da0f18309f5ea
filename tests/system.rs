//! guard fitted into the system, with real parts: a pacman transaction
//! running guard's alpm hooks in a chroot, apt reading guard's apt.conf.d
//! snippet, real apt transactions in a Debian root made by debootstrap, the
//! zypp commit plugin driven frame by frame, systemd-analyze on
//! the units, setpriv for least privilege, restic against an append-only
//! `rclone serve restic`, completions and the man page.

// The tests drive real tools themselves; guard's own exec choke point is
// what they test, not what they use.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const GUARD: &str = env!("CARGO_BIN_EXE_guard");

fn guard(root: &Path) -> Command {
    let mut c = Command::new(GUARD);
    c.arg("--root").arg(root).arg("--no-progress");
    c.env_remove("GUARD_ROOT").env_remove("GUARD_STORE");
    c
}

fn run(c: &mut Command) -> Output {
    let out = c.stdin(Stdio::null()).output().expect("spawn");
    eprintln!(
        "{:?}\n--- stdout\n{}--- stderr\n{}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small root: accounts, a secret only root may read, an admin's file.
/// A `name` script first on PATH, in a directory of its own: (that
/// directory, which must outlive the run, and the PATH to give guard).
fn tool_on_path(name: &str, script: &str) -> (tempfile::TempDir, String) {
    let bin = tempfile::Builder::new()
        .prefix("guard-tool-")
        .tempdir()
        .unwrap();
    std::fs::write(bin.path().join(name), script).unwrap();
    std::fs::set_permissions(
        bin.path().join(name),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (bin, path)
}

fn make_root() -> tempfile::TempDir {
    let t = tempfile::Builder::new()
        .prefix("guard-system-")
        .tempdir()
        .unwrap();
    let r = t.path();
    std::fs::create_dir_all(r.join("etc/pam.d")).unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(r.join("etc/shadow"), "root:$6$secret:19000::::::\n").unwrap();
    std::fs::set_permissions(r.join("etc/shadow"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::write(
        r.join("etc/pam.d/imap"),
        "auth required pam_unix.so\naccount required pam_unix.so\n",
    )
    .unwrap();
    std::fs::write(r.join("etc/hello.conf"), "admin's own settings\n").unwrap();
    t
}

fn snapshots(root: &Path) -> Vec<serde_json::Value> {
    let out = run(guard(root).args(["list", "--json"]));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["snapshots"].as_array().unwrap().clone()
}

/// Copies a host binary and the shared libraries it needs into the root,
/// so it runs in a chroot of it (alpm hooks, apt's sh -c).
fn install_binary(root: &Path, host: &Path, inside: &str) {
    let dest = root.join(inside.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(host, &dest).unwrap();
    let ldd = run(Command::new("ldd").arg(host));
    for tok in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if tok.starts_with('/') {
            let lib = root.join(tok.trim_start_matches('/'));
            std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
            std::fs::copy(tok, &lib).unwrap();
        }
    }
}

/// A pacman package made with bsdtar: one file, /etc/hello.conf.
fn make_package(dir: &Path) -> PathBuf {
    let src = dir.join("pkgsrc");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hello.conf"), "the package's settings\n").unwrap();
    std::fs::write(
        src.join(".PKGINFO"),
        "pkgname = hello\npkgbase = hello\npkgver = 1.0-1\npkgdesc = guard test package\nbuilddate = 1700000000\npackager = guard tests\nsize = 23\narch = any\n",
    )
    .unwrap();
    let pkg = dir.join("hello-1.0-1-any.pkg.tar");
    let out = run(Command::new("bsdtar")
        .arg("-cf")
        .arg(&pkg)
        .arg("-C")
        .arg(&src)
        .args([".PKGINFO", "etc"]));
    assert!(out.status.success());
    pkg
}

/// A root with an empty pacman database, a pacman.conf (`[options]` plus
/// `extra`), guard installed at /usr/bin/guard, and the package
/// `make_package` built in it.
fn pacman_root(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let t = make_root();
    let r = t.path();
    std::fs::create_dir_all(r.join("var/lib/pacman")).unwrap();
    std::fs::write(
        r.join("etc/pacman.conf"),
        format!(
            "[options]\nArchitecture = auto\nSigLevel = Never\nLocalFileSigLevel = Never\n{extra}"
        ),
    )
    .unwrap();
    install_binary(r, Path::new(GUARD), "/usr/bin/guard");
    let pkg = make_package(r);
    (t, pkg)
}

/// The real transaction: pacman installs `pkg` on the root, finding hooks
/// the way it does on the machine itself; the package overwrites an
/// admin's file.
fn pacman_install(r: &Path, pkg: &Path) -> std::process::Output {
    run(Command::new("pacman")
        .arg("--sysroot")
        .arg(r)
        .args(["--noconfirm", "--overwrite", "/etc/hello.conf", "-U"])
        .arg(Path::new("/").join(pkg.file_name().unwrap())))
}

#[test]
fn pacman_transaction_runs_the_hooks_in_the_root() {
    let (t, pkg) = pacman_root("");
    let r = t.path();

    let out = run(guard(r).args(["--yes", "hooks", "install"]));
    assert!(out.status.success(), "{}", text(&out));
    let hook =
        std::fs::read_to_string(r.join("etc/pacman.d/hooks/00-guard-snapshot.hook")).unwrap();
    assert!(hook.contains("When = PreTransaction"), "{hook}");
    assert!(
        !hook.contains("AbortOnFail"),
        "a hook must never block: {hook}"
    );
    // Idempotent: a second install changes nothing.
    let again = run(guard(r).args(["--yes", "hooks", "install"]));
    assert!(again.status.success());
    assert!(text(&again).contains("nothing to do"), "{}", text(&again));

    // The real transaction: pacman on the root, finding the hooks the way
    // it does on the machine itself; the package overwrites an admin's file.
    let out = pacman_install(r, &pkg);
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("guard: snapshot "), "{all}");
    assert!(
        all.contains("file/modified"),
        "the check names the damage: {all}"
    );
    assert!(all.contains("/etc/hello.conf"), "{all}");
    let list = snapshots(r);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["kind"], "pre");
    assert_eq!(list[0]["label"], "pacman: hello");

    // A guard that fails outright (here: `false` in its place) never stops
    // the transaction: the package is still removed.
    install_binary(r, Path::new("/bin/false"), "/usr/bin/guard");
    let out =
        run(Command::new("pacman")
            .arg("--sysroot")
            .arg(r)
            .args(["--noconfirm", "-R", "hello"]));
    assert!(out.status.success(), "{}", text(&out));
    let q = run(Command::new("pacman")
        .arg("--sysroot")
        .arg(r)
        .args(["-Q", "hello"]));
    assert!(!q.status.success(), "hello is gone: {}", text(&q));

    // Uninstall removes exactly what install wrote.
    let out = run(guard(r).args(["--yes", "hooks", "uninstall", "--manager", "pacman"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!r.join("etc/pacman.d/hooks/00-guard-snapshot.hook").exists());
    assert!(!r.join("etc/pacman.d/hooks/zz-guard-check.hook").exists());
    assert!(r.join("etc/pacman.d/hooks").is_dir());
}

/// `HookDir` in pacman.conf replaces the default /etc/pacman.d/hooks
/// (pacman.conf(5)): hooks there would never run, silently. They go where
/// pacman looks, checked with a real transaction.
#[test]
fn pacman_hooks_go_where_pacman_conf_says() {
    let (t, pkg) =
        pacman_root("HookDir = /etc/site-hooks/\n\n[core]\nHookDir = /not/an/option/here\n");
    let r = t.path();
    let out = run(guard(r).args(["--yes", "hooks", "install"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(r.join("etc/site-hooks/00-guard-snapshot.hook").is_file());
    assert!(r.join("etc/site-hooks/zz-guard-check.hook").is_file());
    assert!(!r.join("etc/pacman.d/hooks").exists());
    let out = pacman_install(r, &pkg);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("guard: snapshot "), "{}", text(&out));
    assert_eq!(snapshots(r).len(), 1);
    let out = run(guard(r).args(["--yes", "hooks", "uninstall"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!r.join("etc/site-hooks/00-guard-snapshot.hook").exists());
    assert!(!r.join("etc/site-hooks/zz-guard-check.hook").exists());
}

#[test]
fn hooks_never_fail_a_transaction() {
    let t = make_root();
    let r = t.path();
    // A held lock: warn, exit 0.
    let store = r.join("var/lib/guard");
    std::fs::create_dir_all(&store).unwrap();
    let lock = std::fs::File::create(store.join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let out = run(guard(r).args(["hook-run", "pre", "--manager", "apt"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("locked"), "{}", text(&out));
    assert!(text(&out).contains("warning"), "{}", text(&out));
    drop(lock);
    // A full store: a tiny tmpfs; the snapshot is refused, the hook says so
    // and exits 0.
    let full = tempfile::Builder::new()
        .prefix("guard-full-")
        .tempdir()
        .unwrap();
    let m = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(full.path()));
    assert!(m.status.success(), "mounting a tmpfs needs root");
    let out = run(guard(r)
        .arg("--store")
        .arg(full.path().join("store"))
        .args(["hook-run", "pre"]));
    let _ = Command::new("umount").arg(full.path()).status();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("nearly full"), "{}", text(&out));
    // A corrupt store makes the check fail: still exit 0.
    std::fs::create_dir_all(store.join("snapshots")).unwrap();
    std::fs::write(store.join("snapshots/20200101-000000-000.json"), "{garbage").unwrap();
    let out = run(guard(r).args(["hook-run", "post"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("warning"), "{}", text(&out));
}

/// Runs `c`, killing it if it is still running after `limit`: a test of a
/// hang must not hang itself. Returns the output and whether it was killed.
fn run_bounded(c: &mut Command, limit: std::time::Duration) -> (Output, bool) {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    let mut killed = false;
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "{:?}\n--- stdout\n{}--- stderr\n{}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, killed)
}

/// Neither alpm nor apt has a time limit on a hook: a guard stuck on a hung
/// helper (here an `rpm` that never answers, as one waiting for the rpm
/// database's lock would) must give up by itself, say so, exit 0, and end
/// the helper too.
#[test]
fn a_hung_guard_gives_up_and_the_transaction_goes_on() {
    let t = make_root();
    let r = t.path();
    std::fs::create_dir_all(r.join("var/lib/rpm")).unwrap();
    std::fs::write(r.join("var/lib/rpm/rpmdb.sqlite"), "").unwrap();
    let logs = tempfile::tempdir().unwrap();
    let pids = logs.path().join("pids");
    let (_bin, path) = tool_on_path(
        "rpm",
        &format!(
            "#!/bin/sh\necho $$ >> '{}'\nexec sleep 600\n",
            pids.display()
        ),
    );
    for phase in ["pre", "post"] {
        let start = std::time::Instant::now();
        let (out, killed) = run_bounded(
            guard(r).env("PATH", &path).args([
                "hook-run",
                phase,
                "--manager",
                "apt",
                "--timeout",
                "2",
            ]),
            std::time::Duration::from_secs(60),
        );
        assert!(!killed, "hook-run {phase} hung: {}", text(&out));
        assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            text(&out).contains("did not finish within 2 s"),
            "{}",
            text(&out)
        );
        assert!(
            text(&out).contains("the transaction goes on"),
            "{}",
            text(&out)
        );
    }
    // The stuck helpers were ended with it, not left holding a lock.
    let started = std::fs::read_to_string(&pids).unwrap();
    assert_eq!(started.lines().count(), 2, "{started}");
    for pid in started.lines() {
        // SIGKILL is delivered asynchronously: allow it a moment
        let alive = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim().chars().next();
            !matches!(state, None | Some('Z'))
        };
        let start = std::time::Instant::now();
        while alive() && start.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!alive(), "rpm {pid} still runs");
    }
    // The store is fine and unlocked: the next hook snapshots.
    std::fs::remove_dir_all(r.join("var/lib/rpm")).unwrap();
    let out = run(guard(r).args(["hook-run", "pre", "--manager", "apt"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("guard: snapshot "), "{}", text(&out));
    assert_eq!(snapshots(r).len(), 1);
}

#[test]
fn retention_keeps_hook_snapshots_bounded() {
    let t = make_root();
    let r = t.path();
    for i in 0..22 {
        std::fs::write(r.join("etc/hello.conf"), format!("v{i}\n")).unwrap();
        let out = run(guard(r).args(["hook-run", "pre", "--label", &format!("t{i}")]));
        assert_eq!(out.status.code(), Some(0));
    }
    let out = run(guard(r).args(["snapshot", "--label", "mine"]));
    assert!(out.status.success());
    let list = snapshots(r);
    let pre = list.iter().filter(|s| s["kind"] == "pre").count();
    assert_eq!(pre, 20, "{list:?}");
    assert!(list.iter().any(|s| s["label"] == "t21"));
    assert!(!list.iter().any(|s| s["label"] == "t0"));
    assert!(list.iter().any(|s| s["kind"] == "manual"));
}

#[test]
fn apt_reads_the_hooks_and_they_run() {
    let t = make_root();
    let r = t.path();
    std::fs::create_dir_all(r.join("etc/apt/apt.conf.d")).unwrap();
    let out = run(guard(r).args(["--yes", "hooks", "install"]));
    assert!(out.status.success(), "{}", text(&out));
    // apt itself, reading only this root's configuration.
    let conf = r.join("apt-test.conf");
    std::fs::write(&conf, format!("Dir \"{}/\";\n", r.display())).unwrap();
    let dump = run(Command::new("apt-config")
        .env("APT_CONFIG", &conf)
        .arg("dump"));
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout).to_string();
    let cmd_of = |key: &str| -> String {
        let prefix = format!("{key}:: \"");
        let line = dump
            .lines()
            .find(|l| l.starts_with(&prefix) && l.contains("guard"))
            .unwrap_or_else(|| panic!("{key} not in apt's configuration:\n{dump}"));
        line[prefix.len()..line.len() - 2].to_string()
    };
    let pre = cmd_of("DPkg::Pre-Install-Pkgs");
    let post = cmd_of("DPkg::Post-Invoke");
    assert!(pre.contains("hook-run pre"), "{pre}");
    assert!(post.contains("hook-run post"), "{post}");
    // apt picks the protocol of a Pre-Install-Pkgs hook by the command's
    // first word: version 2, which names the packages and their actions.
    let word = pre.split(' ').next().unwrap();
    let version = run(Command::new("apt-config")
        .env("APT_CONFIG", &conf)
        .args(["shell", "V"])
        .arg(format!("DPkg::Tools::Options::{word}::Version")));
    assert_eq!(text(&version).trim(), "V='2'", "{pre}\n{dump}");
    // Run them the way apt does (sh -c, the package actions on stdin) in a
    // chroot of the root.
    install_binary(r, Path::new(GUARD), "/usr/bin/guard");
    install_binary(r, Path::new("/bin/sh"), "/bin/sh");
    let feed = |cmd: &str, input: &[u8]| {
        let mut child = Command::new("chroot")
            .arg(r)
            .args(["/bin/sh", "-c", cmd])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // apt writes all of it before it waits: a hook that stopped
        // reading would fail this write or hang the test
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let actions = "VERSION 2\nDir=/\n\npostfix - < 3.7.11-0+deb12u1 /var/cache/apt/archives/postfix_3.7.11-0+deb12u1_amd64.deb\npostfix - < 3.7.11-0+deb12u1 **CONFIGURE**\n";
    let out = feed(&pre, actions.as_bytes());
    assert!(out.status.success(), "{}", text(&out));
    let snaps = snapshots(r);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["label"], "apt: install postfix", "{snaps:?}");
    std::fs::remove_file(r.join("etc/pam.d/imap")).unwrap();
    let out = run(Command::new("chroot").arg(r).args(["/bin/sh", "-c", &post]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("/etc/pam.d/imap"), "{}", text(&out));
    assert!(text(&out).contains("critical"), "{}", text(&out));
    // A failing guard never fails dpkg: remove it and the hook is a no-op
    // that still takes all apt writes (more than a pipe holds), so apt
    // never writes into a closed pipe.
    std::fs::remove_file(r.join("usr/bin/guard")).unwrap();
    install_binary(r, Path::new("/usr/bin/cat"), "/usr/bin/cat");
    // as on any system apt runs on
    std::fs::create_dir_all(r.join("dev")).unwrap();
    let out = run(Command::new("mknod")
        .arg(r.join("dev/null"))
        .args(["c", "1", "3"]));
    assert!(out.status.success(), "{}", text(&out));
    let many = format!(
        "{actions}{}",
        "libfoo 1.0 < 2.0 /x/libfoo_2.0_amd64.deb\n".repeat(4000)
    );
    let out = feed(&pre, many.as_bytes());
    assert!(out.status.success(), "{}", text(&out));

    let out = run(guard(r).args(["--yes", "hooks", "uninstall"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!r.join("etc/apt/apt.conf.d/05guard").exists());
}

// ------------------------------------------------ apt in a real Debian root

/// Where debootstrap fetches Debian from: the mirror Debian itself names.
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// A minimal Debian bookworm, made by the real debootstrap in a temporary
/// directory (`DIR/root`): the system guard's apt hooks are meant for.
/// debootstrap mounts /proc and /sys in the target while it configures
/// packages; in a mount namespace of its own those mounts go with it, even
/// if it is killed half-way.
fn debootstrap() -> tempfile::TempDir {
    let t = tempfile::Builder::new()
        .prefix("guard-debian-")
        .tempdir()
        .unwrap();
    let start = std::time::Instant::now();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args(["debootstrap", "--variant=minbase", "bookworm"])
        .arg(t.path().join("root"))
        .arg(DEBIAN_MIRROR)
        .stdin(Stdio::null())
        .output()
        .expect("debootstrap (scripts/test.sh installs it)");
    // Its progress is hundreds of lines: only the end, and only on failure.
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    assert!(
        out.status.success(),
        "debootstrap bookworm from {DEBIAN_MIRROR} failed ({}); it needs that mirror:\n{}\n{}",
        out.status,
        tail(&out.stdout),
        tail(&out.stderr)
    );
    eprintln!("debootstrap took {:?}", start.elapsed());
    t
}

/// Runs a command inside the Debian root as an admin's shell there would:
/// chrooted, with /proc and a devpts of its own mounted (apt logs dpkg's
/// output through a pty). The mounts are made in a private mount namespace,
/// which ends with its last process: nothing stays mounted on this machine
/// whatever becomes of the test. `$2 = ro` also bind-mounts the root's guard
/// store read-only, as a store on a filesystem gone read-only would be.
const IN_ROOT: &str = r#"root=$1; store=$2; shift 2
mount -t proc proc "$root/proc" || exit 125
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" || exit 125
if [ "$store" = ro ]; then
  mount --bind "$root/var/lib/guard" "$root/var/lib/guard" || exit 125
  mount -o remount,bind,ro "$root/var/lib/guard" || exit 125
fi
exec chroot "$root" "$@"
"#;

fn in_root(root: &Path, store: &str, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--"])
        .args(["sh", "-c", IN_ROOT, "sh"])
        .arg(root)
        .arg(store)
        .args(args);
    // The environment of a root shell on the Debian system, not of cargo.
    c.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// Runs `c` with stdout and stderr in one file, interleaved as on the
/// admin's terminal: where guard's lines stand among apt's and dpkg's is
/// part of what is tested.
fn run_merged(c: &mut Command) -> (std::process::ExitStatus, String) {
    use std::io::Seek;
    let mut log = tempfile::tempfile().unwrap();
    let status = c
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log.try_clone().unwrap())
        .status()
        .expect("spawn");
    log.rewind().unwrap();
    let mut s = String::new();
    log.read_to_string(&mut s).unwrap();
    eprintln!("{c:?}: {status}\n{s}");
    (status, s)
}

/// Where `needle` first stands in `log`; panics with the log when it is not.
fn at(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the output:\n{log}"))
}

/// Version `v` (1, 2 or 3) of the package `guardtest`, built with the real
/// dpkg-deb into `out`. 1.0-1 ships /usr/bin/guardtest and two conffiles,
/// /etc/guardtest/main.conf and old.conf. 2.0-1 changes main.conf and
/// drops old.conf the way Debian packages do (dpkg-maintscript-helper
/// rm_conffile, without which dpkg would keep it as obsolete), and its
/// postinst, over-eager, also deletes the admin's own
/// /etc/guardtest/local.conf. 3.0-1 is 2.0-1 with a postinst that then
/// fails: an upgrade that breaks half-way.
fn guardtest_deb(work: &Path, v: u32, out: &Path) {
    dpkg_deb(&guardtest_tree(work, v), out);
}

/// The package tree `guardtest_deb` builds version `v` from, for a test
/// to add to before `dpkg_deb`.
fn guardtest_tree(work: &Path, v: u32) -> PathBuf {
    let d = work.join(format!("guardtest-{v}"));
    let put = |p: &str, text: &str, mode: u32| {
        let f = d.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, text).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    put(
        "DEBIAN/control",
        &format!(
            "Package: guardtest\nVersion: {v}.0-1\nArchitecture: all\n\
             Maintainer: guard tests <root@localhost>\nDescription: guard test package\n"
        ),
        0o644,
    );
    put(
        "usr/bin/guardtest",
        &format!("#!/bin/sh\necho {v}\n"),
        0o755,
    );
    put(
        "etc/guardtest/main.conf",
        &format!("# guardtest {v}\nport = 25\n"),
        0o644,
    );
    if v == 1 {
        put("etc/guardtest/old.conf", "legacy = yes\n", 0o644);
        put(
            "DEBIAN/conffiles",
            "/etc/guardtest/main.conf\n/etc/guardtest/old.conf\n",
            0o644,
        );
    } else {
        put("DEBIAN/conffiles", "/etc/guardtest/main.conf\n", 0o644);
        let rm_conffile =
            "dpkg-maintscript-helper rm_conffile /etc/guardtest/old.conf 2.0-1~ -- \"$@\"\n";
        for script in ["preinst", "postrm"] {
            put(
                &format!("DEBIAN/{script}"),
                &format!("#!/bin/sh\nset -e\n{rm_conffile}"),
                0o755,
            );
        }
        put(
            "DEBIAN/postinst",
            &format!(
                "#!/bin/sh\nset -e\n{rm_conffile}rm -f /etc/guardtest/local.conf\n{}",
                if v == 3 {
                    "echo 'guardtest: cannot start' >&2\nexit 1\n"
                } else {
                    ""
                }
            ),
            0o755,
        );
    }
    d
}

/// Builds the package tree `d` into `out` with the real dpkg-deb.
fn dpkg_deb(d: &Path, out: &Path) {
    let o = run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(d)
        .arg(out));
    assert!(o.status.success(), "{}", text(&o));
}

/// The installed version of guardtest in the root, or "" when it is not.
fn guardtest_version(root: &Path) -> String {
    installed_version(root, "guardtest")
}

/// The installed version of `package` in the root, as dpkg has it, or ""
/// when it is not installed (or not completely: half-configured).
fn installed_version(root: &Path, package: &str) -> String {
    let out = run(&mut in_root(
        root,
        "rw",
        &[
            "dpkg-query",
            "-W",
            "-f=${db:Status-Abbrev}${Version}",
            package,
        ],
    ));
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    s.strip_prefix("ii ").unwrap_or("").to_string()
}

fn pre_snapshots(root: &Path) -> Vec<serde_json::Value> {
    snapshots(root)
        .into_iter()
        .filter(|s| s["kind"] == "pre")
        .collect()
}

/// The hooks as they are meant to run: guard installed in a real Debian
/// system, `guard hooks install` run there, and real apt transactions
/// (apt-get installing local .deb files: no network after debootstrap) that
/// upgrade a package whose maintainer scripts do damage. Also what must
/// never happen: a locked or read-only store, or guard gone, failing apt.
#[test]
fn a_real_apt_transaction_in_a_debian_root_runs_the_hooks() {
    let t = debootstrap();
    let r = &t.path().join("root");

    // guard where its package would put it, hooks installed from inside:
    // the package manager detected as apt.
    std::fs::copy(GUARD, r.join("usr/bin/guard")).unwrap();
    let out = run(&mut in_root(
        r,
        "rw",
        &["/usr/bin/guard", "--yes", "hooks", "install"],
    ));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("apt hooks: installed 1 file\n"),
        "{}",
        text(&out)
    );
    let conf = std::fs::read_to_string(r.join("etc/apt/apt.conf.d/05guard")).unwrap();
    assert!(conf.contains("DPkg::Pre-Install-Pkgs"), "{conf}");

    let work = t.path().join("work");
    for v in [1, 2, 3] {
        guardtest_deb(&work, v, &r.join(format!("tmp/guardtest_{v}.deb")));
    }

    // 1. Install: a snapshot before dpkg unpacks anything, a clean check
    // after it has configured the package.
    let (st, log) = run_merged(&mut in_root(
        r,
        "rw",
        &["apt-get", "install", "-y", "/tmp/guardtest_1.deb"],
    ));
    assert!(st.success(), "{log}");
    let pre = pre_snapshots(r);
    assert_eq!(pre.len(), 1, "{pre:?}");
    // apt told the hook what it was about to do
    assert_eq!(pre[0]["label"], "apt: install guardtest", "{pre:?}");
    let first = pre[0]["id"].as_str().unwrap().to_string();
    let snap = at(
        &log,
        &format!("guard: snapshot {first} before the transaction"),
    );
    assert!(snap < at(&log, "Unpacking guardtest (1.0-1)"), "{log}");
    assert!(
        at(&log, "Setting up guardtest (1.0-1)") < at(&log, "guard: OK"),
        "{log}"
    );
    assert_eq!(guardtest_version(r), "1.0-1");

    // 2. The admin's own file beside the package's, then the upgrade.
    std::fs::write(r.join("etc/guardtest/local.conf"), "relay = mx.example\n").unwrap();
    let (st, log) = run_merged(&mut in_root(
        r,
        "rw",
        &["apt-get", "install", "-y", "/tmp/guardtest_2.deb"],
    ));
    assert!(st.success(), "{log}");
    assert_eq!(guardtest_version(r), "2.0-1");
    assert!(!r.join("etc/guardtest/local.conf").exists());
    assert!(!r.join("etc/guardtest/old.conf").exists());
    let pre = pre_snapshots(r);
    assert_eq!(pre.len(), 2, "{pre:?}");
    let second = pre
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .find(|id| *id != first)
        .unwrap();
    let label_of = |id: &str| pre.iter().find(|s| s["id"] == id).unwrap()["label"].clone();
    assert_eq!(label_of(&second), "apt: upgrade guardtest", "{pre:?}");
    let snap = at(
        &log,
        &format!("guard: snapshot {second} before the transaction"),
    );
    assert!(snap < at(&log, "Unpacking guardtest (2.0-1)"), "{log}");
    // The check's summary comes after dpkg did the damage, on apt's output.
    let summary = &log[at(&log, "Removing obsolete conffile /etc/guardtest/old.conf")..];
    for line in [
        "guard: 1 critical: /etc/guardtest/local.conf vanished",
        // the snapshot this transaction's hook took, seconds before
        &format!("guard: compared with snapshot {second}, taken "),
        "guard:   critical file/vanished: /etc/guardtest/local.conf vanished (owned by no package",
        // (a summary line is cut to the terminal's width)
        "guard:   warning  file/vanished: /etc/guardtest/old.conf vanished (owned by guardtest; guardtest 1.0-1 -> 2.0-1 no lo",
        "guard: details: guard check",
    ] {
        at(summary, line);
    }
    assert!(
        at(summary, "guard: 1 critical:") < at(summary, "guard: compared with snapshot"),
        "{summary}"
    );

    // 3. The admin's `guard check` afterwards, inside the system, against
    // the snapshot the hook took; the store is the root's own.
    let out = run(&mut in_root(r, "rw", &["guard", "--json", "check"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check["snapshot"], second.as_str(), "{check:#}");
    let finding = |path: &str| {
        check["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["paths"][0] == path)
            .unwrap_or_else(|| panic!("no finding for {path}: {check:#}"))
            .clone()
    };
    let local = finding("/etc/guardtest/local.conf");
    assert_eq!(local["id"], "file/vanished", "{local:#}");
    assert_eq!(local["severity"], "critical", "{local:#}");
    assert_eq!(local["fix"], "guard restore /etc/guardtest/local.conf");
    let old = finding("/etc/guardtest/old.conf");
    assert_eq!(old["id"], "file/vanished", "{old:#}");
    assert_eq!(old["severity"], "warning", "{old:#}");
    assert!(r.join("var/lib/guard/snapshots").is_dir());
    // The fix it names brings the admin's file back.
    let out = run(&mut in_root(
        r,
        "rw",
        &["guard", "--yes", "restore", "/etc/guardtest/local.conf"],
    ));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(r.join("etc/guardtest/local.conf")).unwrap(),
        "relay = mx.example\n"
    );

    // 4. Never failing apt. Another guard holds the store's lock: the
    // snapshot is skipped with a warning, the downgrade goes through.
    let lock = std::fs::File::create(r.join("var/lib/guard/lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let (st, log) = run_merged(&mut in_root(
        r,
        "rw",
        &[
            "apt-get",
            "install",
            "-y",
            "--allow-downgrades",
            "/tmp/guardtest_1.deb",
        ],
    ));
    drop(lock);
    assert!(st.success(), "{log}");
    at(&log, "locked by another guard process");
    at(&log, "; the transaction goes on");
    assert_eq!(guardtest_version(r), "1.0-1");
    assert_eq!(pre_snapshots(r).len(), 2);
    // the summary names the older snapshot it fell back on
    at(
        &log,
        &format!("guard: compared with snapshot {second}, taken "),
    );
    // A read-only store: the same.
    let (st, log) = run_merged(&mut in_root(
        r,
        "ro",
        &["apt-get", "install", "-y", "/tmp/guardtest_2.deb"],
    ));
    assert!(st.success(), "{log}");
    at(&log, "is not writable");
    at(&log, "; the transaction goes on");
    assert_eq!(guardtest_version(r), "2.0-1");
    assert_eq!(pre_snapshots(r).len(), 2);

    // 5. An upgrade that fails half-way (its postinst exits 1) after doing
    // the damage: apt still runs Post-Invoke, so the check shows what the
    // broken upgrade left, after dpkg's error; apt's own failure (100)
    // stands, neither masked nor caused by the hooks.
    std::fs::write(r.join("etc/guardtest/local.conf"), "relay = mx.example\n").unwrap();
    let (st, log) = run_merged(&mut in_root(
        r,
        "rw",
        &["apt-get", "install", "-y", "/tmp/guardtest_3.deb"],
    ));
    assert_eq!(st.code(), Some(100), "{log}");
    assert_eq!(pre_snapshots(r).len(), 3);
    let failed = at(
        &log,
        "dpkg: error processing package guardtest (--configure)",
    );
    let critical = at(
        &log,
        "guard:   critical file/vanished: /etc/guardtest/local.conf",
    );
    assert!(failed < critical, "{log}");
    assert!(
        critical
            < at(
                &log,
                "E: Sub-process /usr/bin/dpkg returned an error code (1)"
            ),
        "{log}"
    );
    // and that the upgrade did not finish: the package dpkg left
    // half-configured, with what finishes it
    at(
        &log[failed..],
        "guard:   warning  pkg/unfinished: dpkg left 1 package unfinished: guardtest (half-configured)\n",
    );
    let out = run(&mut in_root(r, "rw", &["guard", "--json", "check"]));
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let unfinished: Vec<&serde_json::Value> = check["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "pkg/unfinished")
        .collect();
    assert_eq!(unfinished.len(), 1, "{check:#}");
    assert!(
        unfinished[0]["fix"]
            .as_str()
            .unwrap()
            .starts_with("dpkg --configure -a"),
        "{check:#}"
    );

    // 6. guard removed but its hooks left behind: apt does not notice.
    std::fs::remove_file(r.join("usr/bin/guard")).unwrap();
    let (st, log) = run_merged(&mut in_root(
        r,
        "rw",
        &["apt-get", "remove", "-y", "guardtest"],
    ));
    assert!(st.success(), "{log}");
    assert!(!log.contains("guard:"), "{log}");
    assert!(!log.contains("/usr/bin/guard"), "{log}");
    assert_eq!(guardtest_version(r), "");

    // Nothing the test mounted is left on this machine.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let base = t.path().to_string_lossy().to_string();
    assert!(!mounts.contains(&base), "{mounts}");
}

// ------------------------------- debian-upgrade walked inside a Debian root

/// Writes `text` to `p` with `mode`, making its directories.
fn put_file(p: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A small package `name` `version` (Architecture: all), with `control`
/// lines added to its control file and `files` (paths inside the package,
/// `DEBIAN/…` scripts included), built with the real dpkg-deb into `out`.
fn small_deb(
    work: &Path,
    name: &str,
    version: &str,
    control: &str,
    files: &[(&str, &str, u32)],
    out: &Path,
) {
    let d = work.join(format!("{name}-{version}"));
    put_file(
        &d.join("DEBIAN/control"),
        &format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\n{control}\
             Maintainer: guard tests <root@localhost>\nDescription: guard test package\n"
        ),
        0o644,
    );
    for (p, text, mode) in files {
        put_file(&d.join(p), text, *mode);
    }
    dpkg_deb(&d, out);
}

/// One suite of the `file:` repository at /srv/repo in the root: its
/// packages in pool/CODENAME, their index made by dpkg-scanpackages, and a
/// Release naming the index by its SHA-256 (apt refuses an index its
/// Release does not list; `[trusted=yes]` only waives the signature).
fn apt_suite(root: &Path, codename: &str, debs: &[&Path]) {
    let repo = root.join("srv/repo");
    let pool = repo.join("pool").join(codename);
    std::fs::create_dir_all(&pool).unwrap();
    for deb in debs {
        std::fs::copy(deb, pool.join(deb.file_name().unwrap())).unwrap();
    }
    let scan = run(Command::new("dpkg-scanpackages")
        .args(["-m", &format!("pool/{codename}"), "/dev/null"])
        .current_dir(&repo));
    assert!(scan.status.success(), "{}", text(&scan));
    let index = format!("dists/{codename}/main/binary-amd64/Packages");
    put_file(
        &repo.join(&index),
        &String::from_utf8_lossy(&scan.stdout),
        0o644,
    );
    let sum = run(Command::new("sha256sum").arg(repo.join(&index)));
    let sum = String::from_utf8_lossy(&sum.stdout);
    put_file(
        &repo.join(format!("dists/{codename}/Release")),
        &format!(
            "Origin: guard-test\nSuite: {codename}\nCodename: {codename}\n\
             Architectures: amd64 all\nComponents: main\n\
             Date: Sat, 01 Jun 2024 00:00:00 UTC\nSHA256:\n {} {} main/binary-amd64/Packages\n",
            sum.split_whitespace().next().unwrap(),
            scan.stdout.len()
        ),
        0o644,
    );
}

/// The packages of the two releases. "bookworm" (the release debootstrap
/// made, named the same so that its os-release and the sources agree):
/// guardtest 1.0-1 and guardtest-data 1.0-1. "guardnext": guardtest-data
/// 2.0-1, a plain upgrade the minimal upgrade does; guardtest-relay 2.0-1,
/// new, which asks debconf for a relay host and writes the answer to
/// /etc/guardtest/relay.conf; and guardtest 2.0-1 (`guardtest_deb`'s:
/// changes main.conf, drops old.conf, its postinst deletes the admin's
/// local.conf), which needs guardtest-relay, so only the full upgrade
/// installs it, and whose postinst then cannot start the service until
/// the admin creates /etc/guardtest/start-ok.
fn two_releases(root: &Path, work: &Path) {
    let deb = |name: &str| work.join(format!("{name}.deb"));
    guardtest_deb(work, 1, &deb("guardtest_1"));
    let next = guardtest_tree(work, 2);
    let control = next.join("DEBIAN/control");
    let c = std::fs::read_to_string(&control).unwrap();
    std::fs::write(&control, format!("{c}Depends: guardtest-relay\n")).unwrap();
    let postinst = next.join("DEBIAN/postinst");
    let p = std::fs::read_to_string(&postinst).unwrap();
    std::fs::write(
        &postinst,
        format!(
            "{p}[ -e /etc/guardtest/start-ok ] || {{ echo 'guardtest: cannot start' >&2; exit 1; }}\n"
        ),
    )
    .unwrap();
    dpkg_deb(&next, &deb("guardtest_2"));
    for v in ["1.0-1", "2.0-1"] {
        let data = format!("# guardtest data {v}\n");
        small_deb(
            work,
            "guardtest-data",
            v,
            "",
            &[("usr/share/guardtest/data", &data, 0o644)],
            &deb(&format!("guardtest-data_{v}")),
        );
    }
    small_deb(
        work,
        "guardtest-relay",
        "2.0-1",
        "Depends: debconf\n",
        &[
            (
                "DEBIAN/templates",
                "Template: guardtest-relay/host\nType: string\nDefault: localhost\n\
                 Description: Relay host for guardtest?\n",
                0o644,
            ),
            (
                "DEBIAN/config",
                "#!/bin/sh\nset -e\n. /usr/share/debconf/confmodule\n\
                 db_input high guardtest-relay/host || true\ndb_go || true\n",
                0o755,
            ),
            (
                "DEBIAN/postinst",
                "#!/bin/sh\nset -e\n. /usr/share/debconf/confmodule\n\
                 db_get guardtest-relay/host\nmkdir -p /etc/guardtest\n\
                 echo \"relay = $RET\" > /etc/guardtest/relay.conf\n",
                0o755,
            ),
        ],
        &deb("guardtest-relay_2.0-1"),
    );
    apt_suite(
        root,
        "bookworm",
        &[&deb("guardtest_1"), &deb("guardtest-data_1.0-1")],
    );
    apt_suite(
        root,
        "guardnext",
        &[
            &deb("guardtest_2"),
            &deb("guardtest-data_2.0-1"),
            &deb("guardtest-relay_2.0-1"),
        ],
    );
}

/// `guard … run debian-upgrade ARGS` inside the root, without a terminal,
/// as an admin runs it over `ssh -T` or from a script: the admin's shell
/// sets no DEBIAN_FRONTEND (guard must see to it), and apt's, dpkg's and
/// guard's lines come interleaved as on that terminal.
fn walk(root: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut argv = vec!["guard", "--yes", "--no-progress", "run", "debian-upgrade"];
    argv.extend(args);
    let mut c = in_root(root, "rw", &argv);
    c.env_remove("DEBIAN_FRONTEND");
    run_merged(&mut c)
}

/// Lines of a walk's output that only a badly fed or badly read apt
/// prints: each is a defect the real walk showed.
fn assert_clean_apt_output(log: &str) {
    for bad in [
        // `apt` read by a program: guard's steps use apt-get
        "WARNING: apt does not have a stable CLI interface",
        // apt's "Do you want to continue?" reading end-of-input
        "Abort.",
        // dpkg's question about a modified configuration file, unanswered
        "end of file on stdin at conffile prompt",
        // debconf asking nobody, on a frontend that reads the fed `y`
        "Relay host for guardtest?",
        "debconf: unable to initialize frontend",
        "Use of uninitialized value",
        // dpkg's progress redrawn with \r, every state kept on one line
        "%(Reading database",
    ] {
        assert!(!log.contains(bad), "{bad:?} in the walk's output:\n{log}");
    }
}

/// Waits for the next second. dpkg's log counts in whole seconds, so the
/// check takes a file written in a second a dpkg run logged in for that
/// run's doing; on the box minutes lie between the admin's edit of the
/// sources and dpkg's runs before and after it, here milliseconds.
fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(
        1050 - u64::from(now.subsec_millis()),
    ));
}

/// The journal's record of step `id`.
fn journal_step<'a>(j: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in the journal: {j:#}"))
}

/// `guard run debian-upgrade` walked as an admin walks it on the box:
/// guard installed in a real Debian bookworm (debootstrap) with its apt
/// hooks, run chrooted there (no `--root`), no terminal, `--yes` and an
/// answers file; the next release is a `file:` apt repository in the root
/// with a codename of its own. The walk stops where the admin has to act
/// (the sources, a postinst that fails) and `--resume` goes on after the
/// admin did; the check step names the damage against the walk's own
/// snapshot, not the newer ones the hooks took on the retry.
#[test]
fn debian_upgrade_walked_inside_a_real_debian_root() {
    let start = std::time::Instant::now();
    let t = debootstrap();
    let r = &t.path().join("root");
    let work = t.path().join("work");
    two_releases(r, &work);
    // Only the local repository: the walk needs no network after
    // debootstrap (and "bookworm" on deb.debian.org switched to
    // "guardnext" would fail the update).
    std::fs::remove_file(r.join("etc/apt/sources.list")).unwrap();
    let sources = r.join("etc/apt/sources.list.d/local.list");
    put_file(
        &sources,
        "deb [trusted=yes] file:/srv/repo bookworm main\n",
        0o644,
    );
    std::fs::copy(GUARD, r.join("usr/bin/guard")).unwrap();
    for argv in [
        &["apt-get", "update"][..],
        &["apt-get", "install", "-y", "guardtest", "guardtest-data"],
        &["guard", "--yes", "hooks", "install"],
    ] {
        let (st, log) = run_merged(&mut in_root(r, "rw", argv));
        assert!(st.success(), "{argv:?}: {log}");
    }
    assert_eq!(guardtest_version(r), "1.0-1");
    // The admin's own file beside the package's, and an edited conffile.
    put_file(
        &r.join("etc/guardtest/local.conf"),
        "relay = mx.example\n",
        0o644,
    );
    let main = r.join("etc/guardtest/main.conf");
    let edited = format!("{}port = 2525\n", std::fs::read_to_string(&main).unwrap());
    std::fs::write(&main, &edited).unwrap();
    put_file(
        &r.join("root/answers.toml"),
        "[answers]\ntarget_codename = \"guardnext\"\n",
        0o600,
    );
    let answers = ["--answers", "/root/answers.toml"];

    // 1. The dry run: the plan, in order, with this system's codename
    // filled in; nothing done.
    let mut dry = in_root(r, "rw", &["guard", "run", "debian-upgrade", "--dry-run"]);
    dry.args(answers);
    let out = run(&mut dry);
    assert!(out.status.success(), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    let mut last = 0;
    for line in [
        "\ntarget_codename=guardnext\n",
        "\nguard --root / --store /var/lib/guard snapshot --kind pre --label 'before debian-upgrade'\n",
        "\n# grep -rlsw bookworm /etc/apt/sources.list /etc/apt/sources.list.d | xargs -r sed -i 's/\\bbookworm\\b/guardnext/g'\n",
        "\n# verify: grep -rqsw -- guardnext /etc/apt/sources.list /etc/apt/sources.list.d\n",
        "\napt-get update\n",
        "\napt-get upgrade -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold\n",
        "\napt-get full-upgrade -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold\n",
        "\nguard --root / --store /var/lib/guard check --against '<snapshot_id>'\n",
    ] {
        let at = plan[last..]
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} not in the plan (in order):\n{plan}"));
        last += at + line.len() - 1;
    }
    assert!(snapshots(r).is_empty());
    assert!(!r.join("var/lib/guard/journals").exists());

    // 2. The walk: the snapshot first, then the sources, which `--yes`
    // cannot edit: it stops there rather than upgrade nothing and finish.
    let (st, log) = walk(r, &answers);
    assert_eq!(st.code(), Some(3), "{log}");
    let snaps = snapshots(r);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["kind"], "pre");
    assert_eq!(snaps[0]["label"], "before debian-upgrade");
    let walk_snap = snaps[0]["id"].as_str().unwrap().to_string();
    assert!(
        at(&log, &format!("   snapshot {walk_snap} ("))
            < at(
                &log,
                "== step 3/7: Switch the sources to the next release (sources)"
            ),
        "{log}"
    );
    at(
        &log,
        "guard: step sources (Switch the sources to the next release) failed: verification failed: \
         grep -rqsw -- guardnext /etc/apt/sources.list /etc/apt/sources.list.d\n",
    );
    at(
        &log,
        "what to do next: No source names guardnext yet: edit them as shown above, then resume and retry this step.\n",
    );
    assert!(!log.contains("apt-get update"), "{log}");
    assert_eq!(guardtest_version(r), "1.0-1");

    // The admin does what the step shows, in the root's shell, in a second
    // of its own (`next_second`).
    next_second();
    let shown = log[at(&log, "   » ") + "   » ".len()..]
        .lines()
        .next()
        .unwrap()
        .to_string();
    let (st, out) = run_merged(&mut in_root(r, "rw", &["sh", "-c", &shown]));
    assert!(st.success(), "{shown}: {out}");
    assert_eq!(
        std::fs::read_to_string(&sources).unwrap(),
        "deb [trusted=yes] file:/srv/repo guardnext main\n"
    );
    next_second();

    // 3. Resumed, told to retry the sources: the update, the minimal
    // upgrade (guardtest-data; guardtest, which needs a new package, kept
    // back), then the full upgrade, where guardtest's postinst fails after
    // deleting the admin's file. apt's one question is answered, dpkg keeps
    // the edited main.conf, debconf asks nobody.
    put_file(
        &r.join("root/answers.toml"),
        "[answers]\ntarget_codename = \"guardnext\"\nretry-sources = \"retry\"\n",
        0o600,
    );
    let resume = ["--resume", "--answers", "/root/answers.toml"];
    let (st, log) = walk(r, &resume);
    assert_eq!(st.code(), Some(3), "{log}");
    assert_clean_apt_output(&log);
    let minimal = at(&log, "== step 5/7: Minimal upgrade first (minimal-upgrade)");
    let full = at(&log, "== step 6/7: Full upgrade (upgrade)");
    let data = at(&log, "Setting up guardtest-data (2.0-1)");
    assert!(minimal < data && data < full, "{log}");
    at(
        &log[minimal..full],
        "The following packages have been kept back:",
    );
    at(&log[full..], "Do you want to continue? [Y/n]");
    at(&log[full..], "Keeping old config file as default.");
    let failed = at(&log, "guardtest: cannot start");
    assert!(full < failed, "{log}");
    at(
        &log[failed..],
        "guard: step upgrade (Full upgrade) failed: exit code 100\n",
    );
    at(
        &log[failed..],
        "what to do next: Fix what apt or dpkg says above",
    );
    assert_eq!(installed_version(r, "guardtest-data"), "2.0-1");
    assert_eq!(installed_version(r, "guardtest-relay"), "2.0-1");
    assert_eq!(guardtest_version(r), "", "half-configured");
    assert_eq!(
        std::fs::read_to_string(r.join("etc/guardtest/relay.conf")).unwrap(),
        "relay = localhost\n",
        "debconf took the question's default"
    );

    // A resume is no retry unless told: the failed step is not run again.
    let (st, log) = walk(r, &resume);
    assert_eq!(st.code(), Some(3), "{log}");
    at(
        &log,
        "guard: step upgrade failed before and was not retried; fix the cause, then guard run \
         debian-upgrade --resume and choose retry (answers file: retry-upgrade = \"retry\" under [answers])\n",
    );
    assert!(!log.contains("apt-get full-upgrade"), "{log}");

    // 4. The admin fixes the cause and resumes, telling guard to retry
    // the full upgrade: apt finishes guardtest, the hooks take a newer
    // `pre` snapshot (the admin's file already gone), and the check still
    // compares with the walk's own.
    put_file(&r.join("etc/guardtest/start-ok"), "", 0o644);
    put_file(
        &r.join("root/answers.toml"),
        "[answers]\ntarget_codename = \"guardnext\"\nretry-upgrade = \"retry\"\n",
        0o600,
    );
    let (st, log) = walk(r, &resume);
    assert_eq!(st.code(), Some(0), "{log}");
    assert_clean_apt_output(&log);
    assert_eq!(guardtest_version(r), "2.0-1");
    assert_eq!(
        std::fs::read_to_string(&main).unwrap(),
        edited,
        "the admin's main.conf kept"
    );
    assert!(r.join("etc/guardtest/main.conf.dpkg-dist").is_file());
    let newest = pre_snapshots(r)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    assert!(newest > walk_snap, "the hooks took their snapshots");
    let check = &log[at(&log, "== step 7/7: Check the damage (check)")..];
    for line in [
        "   │ 1 critical: /etc/guardtest/local.conf vanished\n",
        &format!("   │ compared with snapshot {walk_snap}\n"),
        "   │ CRITICAL (1)\n",
        "   │ * file/vanished: /etc/guardtest/local.conf vanished (owned by no package",
        "   │     fix: guard restore /etc/guardtest/local.conf\n",
        "   │ WARNING (",
        "   │ * pkg/pending-merge: /etc/guardtest/main.conf.dpkg-dist waits to be merged",
        // (wrapped at 80 columns)
        "   │ * file/vanished: /etc/guardtest/old.conf vanished (owned by guardtest;",
        "   │     | upgraded guardtest 1.0-1 -> 2.0-1\n",
        // the walk's own check found the admin's file gone
        "\nplaybook debian-upgrade finished, but its last check found critical damage",
    ] {
        at(check, line);
    }
    assert!(
        at(check, "CRITICAL (1)") < at(check, "WARNING (")
            && at(check, "WARNING (") < at(check, "/etc/guardtest/old.conf vanished"),
        "{check}"
    );
    // The sources edit is the admin's, not a maintainer script's.
    assert!(
        !check.contains("a maintainer script or trigger rewrote it"),
        "{check}"
    );
    // What the walk's own snapshot is for: the default baseline, the hook's
    // newest snapshot, no longer has the admin's file to miss.
    let out = run(&mut in_root(r, "rw", &["guard", "--json", "check"]));
    let plain: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plain["snapshot"], newest.as_str(), "{plain:#}");
    assert!(
        !plain.to_string().contains("/etc/guardtest/local.conf"),
        "{plain:#}"
    );

    // 5. The journal: every step once, in order, with the attempts that
    // failed before, their commands, exit codes and output.
    let j: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.join("var/lib/guard/journals/debian-upgrade.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "target",
            "snapshot",
            "sources",
            "update",
            "minimal-upgrade",
            "upgrade",
            "check"
        ],
        "{j:#}"
    );
    assert!(j["finished"].is_string(), "{j:#}");
    assert_eq!(j["facts"]["os_codename"], "bookworm", "{j:#}");
    assert_eq!(j["answers"]["snapshot_id"], walk_snap.as_str(), "{j:#}");
    assert_eq!(
        journal_step(&j, "target")["note"],
        "target_codename = guardnext"
    );
    assert_eq!(
        journal_step(&j, "snapshot")["note"],
        format!("snapshot {walk_snap}").as_str()
    );
    let src = journal_step(&j, "sources");
    assert_eq!(src["status"], "already-done", "{j:#}");
    assert_eq!(src["earlier"][0]["status"], "failed", "{j:#}");
    assert!(src["earlier"][0]["note"]
        .as_str()
        .unwrap()
        .starts_with("verification failed: grep"));
    let update = journal_step(&j, "update");
    assert_eq!(
        update["commands"][0]["argv"],
        serde_json::json!(["apt-get", "update"])
    );
    assert_eq!(update["commands"][0]["exit"], 0);
    let tail = |s: &serde_json::Value| s["commands"][0]["tail"].as_str().unwrap().to_string();
    let m = journal_step(&j, "minimal-upgrade");
    assert_eq!(m["commands"][0]["exit"], 0);
    at(&tail(m), "The following packages have been kept back:");
    let up = journal_step(&j, "upgrade");
    assert_eq!(up["status"], "done", "{j:#}");
    assert_eq!(up["commands"][0]["exit"], 0);
    let first = &up["earlier"][0];
    assert_eq!(first["status"], "failed", "{j:#}");
    assert_eq!(first["note"], "exit code 100");
    assert_eq!(first["commands"][0]["exit"], 100);
    at(&tail(first), "guardtest: cannot start");
    at(
        &tail(first),
        "guard:   critical file/vanished: /etc/guardtest/local.conf",
    );
    assert_eq!(
        journal_step(&j, "check")["note"],
        "check: 1 critical, 3 warnings",
        "{j:#}"
    );
    assert_eq!(j["answers"]["check_critical"], "yes");

    // Nothing the test mounted is left on this machine.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let base = t.path().to_string_lossy().to_string();
    assert!(!mounts.contains(&base), "{mounts}");
    eprintln!("debian-upgrade walk test took {:?}", start.elapsed());
}

/// `guard hooks uninstall` (no `--manager`, as the README shows it) takes
/// back the hooks of every manager guard installed them for, not only the
/// one it detects now: hooks installed with `--manager` for another one
/// would otherwise stay while it says "nothing to do".
#[test]
fn hooks_uninstall_removes_every_managers_hooks() {
    let t = make_root();
    let r = t.path();
    // dpkg's database: the detected manager is apt
    std::fs::create_dir_all(r.join("var/lib/dpkg")).unwrap();
    for m in ["zypper", "pacman"] {
        let out = run(guard(r).args(["--yes", "hooks", "install", "--manager", m]));
        assert!(out.status.success(), "{}", text(&out));
    }
    let plugin = r.join("usr/lib/zypp/plugins/commit/guard");
    let pre = r.join("etc/pacman.d/hooks/00-guard-snapshot.hook");
    let post = r.join("etc/pacman.d/hooks/zz-guard-check.hook");
    assert!(plugin.is_file() && pre.is_file() && post.is_file());
    let out = run(guard(r).args(["--yes", "hooks", "uninstall"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !plugin.exists() && !pre.exists() && !post.exists(),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("uninstalled 3 files"), "{}", text(&out));
    // and again: nothing left to do
    let out = run(guard(r).args(["--yes", "hooks", "uninstall"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    // An admin's own file at another manager's path is left alone (and
    // does not stop the uninstall); at the detected manager's it is
    // refused, as with --manager.
    let out = run(guard(r).args(["--yes", "hooks", "install", "--manager", "pacman"]));
    assert!(out.status.success(), "{}", text(&out));
    std::fs::create_dir_all(plugin.parent().unwrap()).unwrap();
    std::fs::write(&plugin, "#!/bin/sh\n# the admin's own\n").unwrap();
    let out = run(guard(r).args(["--yes", "hooks", "uninstall"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!pre.exists() && !post.exists(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&plugin).unwrap(),
        "#!/bin/sh\n# the admin's own\n"
    );
    let mine = r.join("etc/apt/apt.conf.d/05guard");
    std::fs::create_dir_all(mine.parent().unwrap()).unwrap();
    std::fs::write(&mine, "// the admin's own\n").unwrap();
    let out = run(guard(r).args(["--yes", "hooks", "uninstall"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("not written by guard"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&mine).unwrap(),
        "// the admin's own\n"
    );
}

/// The hooks and units name no store: what they run snapshots into the
/// default one inside the root. A `--store` given to `install` says so
/// instead of looking as if the snapshots would go there.
#[test]
fn install_with_another_store_says_the_hooks_use_the_default_one() {
    let t = make_root();
    let r = t.path();
    std::fs::create_dir_all(r.join("var/lib/dpkg")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    for what in [&["hooks", "install"][..], &["units", "install"]] {
        let out = run(guard(r)
            .arg("--store")
            .arg(elsewhere.path())
            .arg("--yes")
            .args(what));
        assert!(out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("default store /var/lib/guard")
                && err.contains(&elsewhere.path().display().to_string()),
            "{what:?}: {err}"
        );
    }
    // the default store, named or not, is not worth a word
    for store in [None, Some(r.join("var/lib/guard"))] {
        let mut c = guard(r);
        if let Some(s) = &store {
            c.arg("--store").arg(s);
        }
        let out = run(c.args(["--yes", "hooks", "install"]));
        assert!(out.status.success(), "{}", text(&out));
        assert!(!text(&out).contains("default store"), "{}", text(&out));
    }
}

#[test]
fn foreign_files_are_never_overwritten_or_removed() {
    let t = make_root();
    let r = t.path();
    std::fs::create_dir_all(r.join("etc/apt/apt.conf.d")).unwrap();
    let mine = r.join("etc/apt/apt.conf.d/05guard");
    std::fs::write(&mine, "// the admin's own\n").unwrap();
    for action in ["install", "uninstall"] {
        let out = run(guard(r).args(["--yes", "hooks", action, "--manager", "apt"]));
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(
            text(&out).contains("not written by guard"),
            "{}",
            text(&out)
        );
        assert_eq!(
            std::fs::read_to_string(&mine).unwrap(),
            "// the admin's own\n"
        );
    }
    // A symlink out of the root in the way is refused, nothing written outside.
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(r.join("etc/systemd")).unwrap();
    std::os::unix::fs::symlink(outside.path(), r.join("etc/systemd/system")).unwrap();
    let out = run(guard(r).args(["--yes", "units", "install"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

fn send(w: &mut impl Write, frame: &[u8]) {
    w.write_all(frame).unwrap();
    w.flush().unwrap();
}

fn recv(r: &mut impl BufRead) -> String {
    let mut buf = Vec::new();
    r.read_until(0, &mut buf).unwrap();
    String::from_utf8_lossy(&buf).to_string()
}

#[test]
fn zypp_commit_plugin_speaks_the_protocol() {
    let t = make_root();
    let r = t.path();
    std::fs::create_dir_all(r.join("etc/zypp")).unwrap();
    let out = run(guard(r).args(["--yes", "hooks", "install"]));
    assert!(out.status.success(), "{}", text(&out));
    let script = r.join("usr/lib/zypp/plugins/commit/guard");
    let md = std::fs::metadata(&script).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o755);
    let body = std::fs::read_to_string(&script).unwrap();
    assert!(body.contains("hook-run zypp-plugin"), "{body}");

    // The harness plays libzypp: frames in, one ACK frame out per frame.
    let mut child = guard(r)
        .args(["hook-run", "zypp-plugin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let mut rd = BufReader::new(child.stdout.take().unwrap());
    send(&mut w, b"PLUGINBEGIN\nuserdata:dup to 15.6\n\n\0");
    assert_eq!(recv(&mut rd), "ACK\n\n\0");
    let list = snapshots(r);
    assert_eq!(list.len(), 1, "snapshot taken at PLUGINBEGIN");
    assert_eq!(list[0]["kind"], "pre");
    assert_eq!(list[0]["label"], "zypper: dup to 15.6");
    let steps = br#"{"TransactionStepList":[]}"#;
    let mut f = format!("COMMITBEGIN\ncontent-length:{}\n\n", steps.len()).into_bytes();
    f.extend_from_slice(steps);
    f.push(0);
    send(&mut w, &f);
    assert_eq!(recv(&mut rd), "ACK\n\n\0");
    std::fs::remove_file(r.join("etc/pam.d/imap")).unwrap();
    send(&mut w, b"COMMITEND\n\n\0");
    assert_eq!(recv(&mut rd), "ACK\n\n\0");
    send(&mut w, b"PLUGINEND\n\n\0");
    assert_eq!(recv(&mut rd), "ACK\n\n\0");
    send(&mut w, b"_DISCONNECT\n\n\0");
    assert_eq!(recv(&mut rd), "ACK\n\n\0");
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("/etc/pam.d/imap"), "check at PLUGINEND: {err}");
    let mut rest = Vec::new();
    rd.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing but frames on stdout: {rest:?}");
}

fn exposure(root: &Path, unit: &str) -> f64 {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(unit));
    let all = text(&out);
    let line = all
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no rating: {all}"));
    let after = line.split(": ").nth(1).unwrap();
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn units_are_valid_and_hardened() {
    let t = make_root();
    let r = t.path();
    install_binary(r, Path::new(GUARD), "/usr/bin/guard");
    // systemd's own units, so verify can resolve sysinit.target & co.
    std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
    let cp = run(Command::new("cp")
        .args(["-a", "/lib/systemd/system"])
        .arg(r.join("usr/lib/systemd/")));
    assert!(cp.status.success());
    let out = run(guard(r).args(["--yes", "units", "install"]));
    assert!(out.status.success(), "{}", text(&out));
    let dir = r.join("etc/systemd/system");
    let units = [
        "guard-snapshot.service",
        "guard-snapshot.timer",
        "guard-check.service",
    ];
    let mut verify = Command::new("systemd-analyze");
    verify
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", r.display()));
    for u in units {
        verify.arg(dir.join(u));
    }
    let out = run(&mut verify);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
    let timer = std::fs::read_to_string(dir.join("guard-snapshot.timer")).unwrap();
    for k in ["OnCalendar=daily", "Persistent=true", "RandomizedDelaySec="] {
        assert!(timer.contains(k), "{timer}");
    }
    for svc in ["guard-snapshot.service", "guard-check.service"] {
        let body = std::fs::read_to_string(dir.join(svc)).unwrap();
        assert!(body.contains("CapabilityBoundingSet=CAP_DAC_READ_SEARCH\n"));
        let e = exposure(r, svc);
        assert!(e <= 1.5, "{svc} exposure {e}");
    }
    let out = run(guard(r).args(["--yes", "units", "uninstall"]));
    assert!(out.status.success());
    for u in units {
        assert!(!dir.join(u).exists(), "{u}");
    }
}

/// Uninstalling units `systemctl enable` linked leaves the links
/// dangling: `guard units uninstall` says so, naming the disable to run
/// first, and says nothing once they are disabled (links made and removed
/// by the real `systemctl --root`).
#[test]
fn units_uninstall_warns_while_they_are_enabled() {
    let t = make_root();
    let r = t.path();
    let out = run(guard(r).args(["--yes", "units", "install"]));
    assert!(out.status.success(), "{}", text(&out));
    // The root is not `/`: what guard says to run must act on that root,
    // never enable (or, with --now, start) the units on this host.
    let enable = format!(
        "systemctl --root={} enable guard-snapshot.timer guard-check.service",
        r.display()
    );
    assert!(text(&out).contains(&enable), "{}", text(&out));
    assert!(!text(&out).contains("--now"), "{}", text(&out));
    let systemctl = |verb: &str| {
        let out = run(Command::new("systemctl")
            .arg(format!("--root={}", r.display()))
            .args([verb, "guard-snapshot.timer", "guard-check.service"]));
        assert!(out.status.success(), "{}", text(&out));
    };
    systemctl("enable");
    let warning = format!(
        "systemctl --root={} disable guard-snapshot.timer guard-check.service first",
        r.display()
    );
    // without --yes: warned before anything is asked, nothing removed
    let out = run(guard(r).args(["units", "uninstall"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains(&warning), "{}", text(&out));
    assert!(r.join("etc/systemd/system/guard-snapshot.timer").exists());
    systemctl("disable");
    let out = run(guard(r).args(["--yes", "units", "uninstall"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("still enabled"), "{}", text(&out));
    assert!(!r.join("etc/systemd/system/guard-snapshot.timer").exists());
}

fn setpriv(root: &Path, caps: &str, args: &[&str]) -> Output {
    let mut c = Command::new("setpriv");
    c.arg(format!("--bounding-set=-all{caps}"))
        .arg("--inh-caps=-all")
        .arg("--")
        .arg(GUARD)
        .arg("--root")
        .arg(root)
        .arg("--no-progress")
        .args(args);
    run(&mut c)
}

#[test]
fn snapshot_and_check_need_only_cap_dac_read_search() {
    let t = make_root();
    let r = t.path();
    let out = setpriv(r, ",+dac_read_search", &["snapshot", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    // The unreadable-to-others shadow made it into the store.
    let show = run(guard(r).args(["show", &id, "--json"]));
    let s: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(s["errors"], 0, "{s}");
    let store = r.join("var/lib/guard");
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let out = setpriv(r, ",+dac_read_search", &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::remove_file(r.join("etc/pam.d/imap")).unwrap();
    let out = setpriv(r, ",+dac_read_search", &["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Without even that: a clear refusal naming the capability.
    for cmd in ["snapshot", "check"] {
        let out = setpriv(r, "", &[cmd]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(text(&out).contains("CAP_DAC_READ_SEARCH"), "{}", text(&out));
    }
}

/// The `Cap*:` lines of a /proc status file, by name.
fn cap_lines(status: &str) -> Vec<(String, String)> {
    status
        .lines()
        .filter_map(|l| l.strip_prefix("Cap"))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (format!("Cap{k}"), v.trim().to_string()))
        .collect()
}

#[test]
fn snapshot_and_check_drop_every_capability_they_do_not_read_with() {
    let t = make_root();
    let r = t.path();
    // An rpm database makes guard run `rpm`; the `rpm` first on PATH
    // records its own capabilities and those of every thread of guard.
    std::fs::create_dir_all(r.join("var/lib/rpm")).unwrap();
    std::fs::write(r.join("var/lib/rpm/rpmdb.sqlite"), "").unwrap();
    let logs = tempfile::Builder::new()
        .prefix("guard-caps-")
        .tempdir()
        .unwrap();
    let log = logs.path().join("caps.log");
    let (_bin, path) = tool_on_path(
        "rpm",
        &format!(
            // (a thread of guard's that ends between the glob and the
            // read, e.g. a ledger walker, has nothing left to check)
            "#!/bin/sh\n{{ echo child; grep ^Cap /proc/self/status; for s in /proc/$PPID/task/*/status; do c=$(grep ^Cap \"$s\" 2>/dev/null) && printf 'guard\\n%s\\n' \"$c\"; done; }} >> '{}'\nexit 0\n",
            log.display()
        ),
    );
    for (n, cmd) in ["snapshot", "check"].into_iter().enumerate() {
        let _ = std::fs::remove_file(&log);
        // a database unlike the snapshot's, so it is read again
        std::fs::write(r.join("var/lib/rpm/rpmdb.sqlite"), "x".repeat(n)).unwrap();
        // guard as an administrator runs it: root with every capability
        let out = run(guard(r).env("PATH", &path).arg(cmd));
        assert!(
            out.status.code().is_some_and(|c| c < 3),
            "{cmd}: {}",
            text(&out)
        );
        let got = std::fs::read_to_string(&log).expect("guard ran rpm");
        let mut who = "";
        let mut seen = 0;
        for line in got.lines() {
            if !line.starts_with("Cap") {
                who = if line == "child" {
                    "rpm"
                } else {
                    "a guard thread"
                };
                continue;
            }
            for (k, v) in cap_lines(line) {
                let want = match (k.as_str(), who) {
                    ("CapInh" | "CapAmb", _) => "0000000000000000",
                    // guard itself keeps CAP_SYS_ADMIN for trusted.* xattrs
                    ("CapEff" | "CapPrm", "a guard thread") => "0000000000200004",
                    // CAP_DAC_READ_SEARCH only
                    _ => "0000000000000004",
                };
                assert_eq!(v, want, "{cmd}: {who} {k}\n{got}");
                seen += 1;
            }
        }
        assert!(seen >= 10, "{cmd}: {got}");
    }
    // The shadow still made it into the snapshot.
    let list = snapshots(r);
    let id = list.last().unwrap()["id"].as_str().unwrap().to_string();
    let show = run(guard(r).args(["show", &id, "--json"]));
    let s: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(s["errors"], 0, "{s}");
}

#[test]
fn the_capability_check_holds_without_proc() {
    let t = make_root();
    let r = t.path();
    // /proc hidden (an alpm hook's chroot has none): guard must still see
    // that it lacks the capability, not take a snapshot without /etc/shadow.
    // The tmpfs is over /proc of a private mount namespace only.
    for cmd in ["snapshot", "check"] {
        let out = run(Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /proc && exec setpriv --bounding-set=-all --inh-caps=-all -- \"$@\"",
            )
            .arg("sh")
            .arg(GUARD)
            .arg("--root")
            .arg(r)
            .args(["--no-progress", cmd]));
        assert_eq!(out.status.code(), Some(3), "{cmd}: {}", text(&out));
        assert!(text(&out).contains("CAP_DAC_READ_SEARCH"), "{}", text(&out));
    }
    assert!(snapshots(r).is_empty());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(std::process::Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn restic(repo: &str, pw: &Path) -> Command {
    let mut c = Command::new("restic");
    c.env("RESTIC_PASSWORD_FILE", pw)
        .env("RESTIC_CACHE_DIR", pw.parent().unwrap().join("cache"))
        .args(["-r", repo]);
    c
}

fn restic_snapshots(repo: &str, pw: &Path) -> Vec<serde_json::Value> {
    let out = run(restic(repo, pw).args(["snapshots", "--json"]));
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn push_lands_in_an_append_only_repository() {
    let t = make_root();
    let r = t.path();
    let work = push_work();
    let pw = work.path().join("password");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let port = free_port();
    let server = Server(
        Command::new("rclone")
            .args(["serve", "restic", "--append-only", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(work.path().join("repo"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let repo = format!("rest:http://127.0.0.1:{port}/");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(up, "rclone serve restic did not start");
    let out = run(restic(&repo, &pw).arg("init"));
    assert!(out.status.success(), "{}", text(&out));

    let first = run(guard(r).args(["snapshot", "--json"]));
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let first = first["id"].as_str().unwrap().to_string();
    let push = |extra: &[&str]| {
        run(guard(r)
            .env("RESTIC_PASSWORD_FILE", &pw)
            .env("RESTIC_CACHE_DIR", work.path().join("cache"))
            .args(["--yes", "--json", "push", "--to", &repo])
            .args(extra))
    };
    let out = push(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let snaps = restic_snapshots(&repo, &pw);
    assert_eq!(snaps.len(), 1);
    let tags: Vec<&str> = snaps[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&format!("guard:{first}").as_str()),
        "{tags:?}"
    );
    // The snapshot file and the shadow object are in the repository.
    let ls = run(restic(&repo, &pw).args(["ls", "latest"]));
    let ls = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(ls.contains(&format!("snapshots/{first}.json")), "{ls}");
    let shadow = blake3::hash(b"root:$6$secret:19000::::::\n")
        .to_hex()
        .to_string();
    assert!(ls.contains(&shadow[2..]), "{ls}");

    // What was pushed is a usable store again: restore it elsewhere and
    // guard verifies it.
    let back = work.path().join("back");
    let out = run(restic(&repo, &pw)
        .args(["restore", "latest", "--target"])
        .arg(&back));
    assert!(out.status.success(), "{}", text(&out));
    let store = std::fs::canonicalize(r.join("var/lib/guard")).unwrap();
    let restored = back.join(store.strip_prefix("/").unwrap());
    let out = run(guard(r)
        .arg("--store")
        .arg(&restored)
        .args(["verify", &first]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Second push: only the new snapshot goes.
    std::fs::write(r.join("etc/hello.conf"), "changed\n").unwrap();
    let out = run(guard(r).args(["snapshot", "--label", "second"]));
    assert!(out.status.success());
    let out = push(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pushed"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["skipped"], serde_json::json!([first]));
    assert_eq!(restic_snapshots(&repo, &pw).len(), 2);

    // The host cannot delete: forget is refused by the append-only server.
    let sid = snaps[0]["id"].as_str().unwrap().to_string();
    let out = run(restic(&repo, &pw).args(["forget", &sid]));
    // (restic retries the refused delete for ~45 s before it gives up.)
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("403 Forbidden"), "{}", text(&out));
    assert_eq!(restic_snapshots(&repo, &pw).len(), 2);
    drop(server);
}

/// Starts `rclone serve restic --append-only` on a free port with `extra`
/// flags; the server and its `rest:` URL (without credentials).
fn serve_append_only(dir: &Path, extra: &[&str]) -> (Server, u16) {
    let port = free_port();
    let server = Server(
        Command::new("rclone")
            .args(["serve", "restic", "--append-only", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (server, port);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("rclone serve restic did not start");
}

/// A local restic repository in `work` and its password file.
/// A directory for a push test's repository and restic cache.
fn push_work() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("guard-push-")
        .tempdir()
        .unwrap()
}

fn local_repo(work: &Path) -> (String, PathBuf) {
    let pw = work.join("password");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let repo = work.join("repo").to_str().unwrap().to_string();
    let out = run(restic(&repo, &pw).arg("init"));
    assert!(out.status.success(), "{}", text(&out));
    (repo, pw)
}

fn push_cmd(c: &mut Command, pw: &Path, repo: &str) {
    c.env("RESTIC_PASSWORD_FILE", pw)
        .env("RESTIC_CACHE_DIR", pw.parent().unwrap().join("cache"))
        .args(["--yes", "--json", "push", "--to", repo]);
}

#[test]
fn push_never_shows_the_repository_password() {
    let t = make_root();
    let r = t.path();
    let work = push_work();
    let w = work.path();
    // rest-server's basic auth reaches restic 0.14 only inside the URL.
    let (server, port) = serve_append_only(&w.join("repo"), &["--user", "u", "--pass", "s3cret"]);
    let repo = format!("rest:http://u:s3cret@127.0.0.1:{port}/");
    let pw = w.join("password");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let out = run(restic(&repo, &pw).arg("init"));
    assert!(out.status.success(), "{}", text(&out));
    // A restic first on PATH that records the arguments it is given (what
    // every user can read in /proc/PID/cmdline) and runs the real one.
    let argv_log = w.join("argv.log");
    let (_bin, path) = tool_on_path(
        "restic",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec /usr/bin/restic \"$@\"\n",
            argv_log.display()
        ),
    );
    assert!(run(guard(r).arg("snapshot")).status.success());

    let mut c = guard(r);
    c.env("PATH", &path);
    push_cmd(&mut c, &pw, &repo);
    let out = run(&mut c);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("s3cret"), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["repository"],
        format!("rest:http://u:***@127.0.0.1:{port}/"),
        "{v}"
    );
    assert_eq!(v["pushed"].as_array().unwrap().len(), 1, "{v}");
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("backup"), "{argv}");
    assert!(
        !argv.contains("s3cret"),
        "restic's argv shows the password: {argv}"
    );
    // Append-only in what it asks, too: never forget, prune, tag or unlock.
    for line in argv.lines() {
        let sub = line.split(' ').find(|a| !a.starts_with('-')).unwrap_or("");
        assert!(
            ["snapshots", "find", "backup"].contains(&sub),
            "restic {line}"
        );
    }

    // Unreachable: one line, exit 3, and still no password.
    drop(server);
    for json in [false, true] {
        let mut c = guard(r);
        c.env("PATH", &path);
        if json {
            push_cmd(&mut c, &pw, &repo);
        } else {
            c.env("RESTIC_PASSWORD_FILE", &pw)
                .args(["--yes", "push", "--to", &repo]);
        }
        let out = run(&mut c);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(!text(&out).contains("s3cret"), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("connection refused"), "{err}");
        if json {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(v["error"].as_str().unwrap().contains("u:***@"), "{v}");
        }
    }
    // Missing restic: said on one line, without the password.
    let mut c = guard(r);
    c.env("PATH", w.join("nowhere"));
    push_cmd(&mut c, &pw, &repo);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("restic is not installed"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("s3cret"), "{}", text(&out));
}

/// `--to rest:http://u:PASSWORD@…` puts the password in guard's own
/// arguments, which every user reads in /proc/PID/cmdline for as long as
/// the push runs; restic's own RESTIC_REPOSITORY (readable by root only,
/// in /proc/PID/environ) names the repository instead.
#[test]
fn push_takes_the_repository_from_restic_repository() {
    let t = make_root();
    let r = t.path();
    let work = push_work();
    let (repo, pw) = local_repo(work.path());
    assert!(run(guard(r).arg("snapshot")).status.success());
    let mut c = guard(r);
    c.env("RESTIC_PASSWORD_FILE", &pw)
        .env("RESTIC_CACHE_DIR", work.path().join("cache"))
        .env("RESTIC_REPOSITORY", &repo)
        .args(["--yes", "--json", "push"]);
    let out = run(&mut c);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pushed"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(restic_snapshots(&repo, &pw).len(), 1);
}

#[test]
fn a_push_restic_could_not_finish_is_sent_again() {
    let t = make_root();
    let r = t.path();
    let work = push_work();
    let (repo, pw) = local_repo(work.path());
    let out = run(guard(r).args(["snapshot", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let hash = blake3::hash(b"admin's own settings\n").to_hex().to_string();
    let obj = r
        .join("var/lib/guard/objects")
        .join(&hash[..2])
        .join(&hash[2..]);
    // One object restic cannot read (root without DAC capabilities, mode
    // 0000): restic saves a snapshot without it, with every tag, exit 3.
    std::fs::set_permissions(&obj, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut c = Command::new("setpriv");
    c.args(["--bounding-set=-all", "--inh-caps=-all", "--", GUARD])
        .arg("--root")
        .arg(r)
        .arg("--no-progress");
    push_cmd(&mut c, &pw, &repo);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("incomplete"), "{}", text(&out));
    assert_eq!(restic_snapshots(&repo, &pw).len(), 1);
    std::fs::set_permissions(&obj, std::fs::Permissions::from_mode(0o400)).unwrap();

    // The next push must not take that tag for the snapshot: it sends it
    // again, and the newest copy holds the object.
    let mut c = guard(r);
    push_cmd(&mut c, &pw, &repo);
    let out = run(&mut c);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pushed"][0]["id"], id.as_str(), "{v}");
    let ls = run(restic(&repo, &pw).args(["ls", "latest", "--tag", &format!("guard:{id}")]));
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains(&hash[2..]),
        "{}",
        text(&ls)
    );
    // And now it is complete: skipped.
    let mut c = guard(r);
    push_cmd(&mut c, &pw, &repo);
    let out = run(&mut c);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["skipped"], serde_json::json!([id]), "{v}");
    assert_eq!(restic_snapshots(&repo, &pw).len(), 2);
}

#[test]
fn push_sends_nothing_a_snapshot_names_outside_the_store() {
    let t = make_root();
    let r = t.path();
    let work = push_work();
    let (repo, pw) = local_repo(work.path());
    let elsewhere = work.path().join("host-secret");
    std::fs::write(&elsewhere, "not guard's to send\n").unwrap();
    let out = run(guard(r).args(["snapshot", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    // A planted snapshot file (its manifest hash made to match) whose
    // "object name" is an absolute path after two characters.
    let doc = r.join(format!("var/lib/guard/snapshots/{id}.json"));
    let raw = std::fs::read_to_string(&doc).unwrap();
    let hash = blake3::hash(b"admin's own settings\n").to_hex().to_string();
    let planted = format!("ab{}", elsewhere.display());
    let key = ",\"manifest\":";
    let at = raw.find(key).unwrap() + key.len();
    let (head, body) = raw.split_at(at);
    let body = body
        .trim_end()
        .strip_suffix('}')
        .unwrap()
        .replace(&hash, &planted);
    let old = blake3::hash(raw[at..].trim_end().strip_suffix('}').unwrap().as_bytes());
    let new = blake3::hash(body.as_bytes());
    let head = head.replace(old.to_hex().as_str(), new.to_hex().as_str());
    std::fs::set_permissions(&doc, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&doc, format!("{head}{body}}}\n")).unwrap();
    let out = run(guard(r).args(["show", &id, "--json"]));
    assert!(
        out.status.success(),
        "the planted snapshot must load: {}",
        text(&out)
    );

    let mut c = guard(r);
    push_cmd(&mut c, &pw, &repo);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("invalid object"), "{}", text(&out));
    assert!(restic_snapshots(&repo, &pw).is_empty());
}

#[test]
fn completions_and_man_page() {
    for (shell, needle) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef guard"),
        ("fish", "complete -c guard"),
    ] {
        let out = run(Command::new(GUARD).args(["completions", shell]));
        assert!(out.status.success());
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains(needle), "{shell}: {s}");
        for sub in ["snapshot", "check", "restore", "hooks", "push"] {
            assert!(s.contains(sub), "{shell} completes {sub}");
        }
        // the hooks' internal command is not offered to users
        assert!(!s.contains("hook-run"), "{shell} offers hook-run");
        assert!(
            s.contains("--root") || s.contains("-l root"),
            "{shell} completes the global options"
        );
    }
    let out = run(Command::new(GUARD).arg("man"));
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.starts_with(".ie") || s.contains(".TH guard"), "{s}");
    assert!(s.contains(".TH guard 1"), "{s}");
    assert!(s.contains("snapshot") && s.contains("\\-\\-root"), "{s}");
    // One page that describes every command and its options, not pointers
    // to guard-check(1) and the like, which nothing installs.
    assert!(
        !s.contains("guard\\-check(1)") && !s.contains("guard-check(1)"),
        "{s}"
    );
    for (heading, option) in [
        ("guard check", "\\-\\-against"),
        ("guard restore", "\\-\\-vanished"),
        ("guard run", "\\-\\-answers"),
        ("guard playbook show", "NAME"),
        ("guard hooks", "\\-\\-manager"),
        ("guard prune", "\\-\\-keep"),
    ] {
        let at = s
            .find(&format!(".SS \"{heading}\""))
            .unwrap_or_else(|| panic!("no section for {heading}: {s}"));
        assert!(s[at..].contains(option), "{heading} {option}: {s}");
    }
    assert!(
        !s.contains("hook\\-run"),
        "the hooks' internal command: {s}"
    );
    // roff's preamble once, at the top
    assert_eq!(s.matches(".ds Aq").count(), 2, "{s}");
}
