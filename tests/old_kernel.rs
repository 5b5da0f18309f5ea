//! guard on the kernels of the systems it is for: Leap 42.3 runs Linux 4.4,
//! Leap 15.0-15.3 4.12 and 5.3, Debian 10 4.19, and an Arch box left alone
//! for years anything before 5.6. None has `openat2` (5.6), `statx` came
//! with 4.11, the `*xattrat` calls with 6.13. The binary runs here under a
//! real seccomp filter that answers ENOSYS for every one of those, as such
//! a kernel does, and must still do its whole job, symlinks refused as
//! before.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const GUARD: &str = env!("CARGO_BIN_EXE_guard");

/// The system calls Linux 4.4 does not have that guard or its libraries
/// may call (x86_64 numbers): statx, clone3, close_range, openat2,
/// faccessat2, and setxattrat, getxattrat, listxattrat, removexattrat.
const NEWER_THAN_4_4: [u32; 9] = [332, 435, 436, 437, 439, 463, 464, 465, 466];

/// A classic BPF seccomp program: ENOSYS for `nrs` on x86_64, everything
/// else allowed.
fn enosys_filter(nrs: &[u32]) -> Vec<libc::sock_filter> {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let n = nrs.len() as u8;
    // seccomp_data: nr at offset 0, arch at 4
    let mut p = vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jeq(AUDIT_ARCH_X86_64, 0, n + 1),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
    ];
    for (i, nr) in nrs.iter().enumerate() {
        p.push(jeq(*nr, n - i as u8, 0));
    }
    p.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    p.push(stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
    ));
    p
}

/// guard on `root` and `store`, as on Linux 4.4 (see the top of the file).
fn old_kernel_guard(root: &Path, store: Option<&Path>, args: &[&str]) -> Output {
    #[allow(clippy::disallowed_methods)] // tests drive the binary directly
    let mut c = Command::new(GUARD);
    c.arg("--root").arg(root).arg("--no-progress");
    if let Some(s) = store {
        c.arg("--store").arg(s);
    }
    c.args(args)
        .env_remove("GUARD_ROOT")
        .env_remove("GUARD_STORE")
        .stdin(Stdio::null());
    as_on_linux_4_4(&mut c);
    c.output().unwrap()
}

/// Runs `c` under [`enosys_filter`] of [`NEWER_THAN_4_4`].
fn as_on_linux_4_4(c: &mut Command) {
    let prog = enosys_filter(&NEWER_THAN_4_4);
    // SAFETY: between fork and exec only async-signal-safe calls (prctl,
    // syscall) on memory prepared before the fork.
    unsafe {
        c.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// The filter itself works: a process under it gets ENOSYS for openat2 and
/// statx, and the rest of the kernel as usual. (Without this, a filter that
/// blocked nothing would make every test below pass for the wrong reason.)
#[test]
fn the_filter_answers_as_an_old_kernel_does() {
    // `stat` calls statx, and falls back to fstatat only on coreutils'
    // terms; python's os.stat does not use statx at all: ask the kernel
    // directly through python's ctypes instead.
    let probe = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(437, -100, b"/", None, 0)
print("openat2", r, ctypes.get_errno())
r = libc.syscall(332, -100, b"/", 0, 0, None)
print("statx", r, ctypes.get_errno())
print("open", os.open("/", os.O_RDONLY) >= 0)
"#;
    #[allow(clippy::disallowed_methods)]
    let mut c = Command::new("python3");
    c.args(["-c", probe]);
    as_on_linux_4_4(&mut c);
    let o = c.output().expect("python3");
    let out = String::from_utf8_lossy(&o.stdout);
    let enosys = libc::ENOSYS.to_string();
    assert!(
        out.contains(&format!("openat2 -1 {enosys}")),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains(&format!("statx -1 {enosys}")), "{out}");
    assert!(out.contains("open True"), "{out}");
}

/// Incident 1 and 2 on a 4.4 kernel: snapshot, the admin's PAM file gone and
/// a drop-in reached through an absolute symlink (resolved inside the root)
/// that turns passwords back on, check, restore, verify. A directory the
/// "upgrade" swapped for a symlink to a host directory is never written
/// through.
#[test]
fn the_core_loop_runs_where_the_kernel_has_no_openat2() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let store = d.path().join("store");
    let outside = d.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("host.conf"), "the host's own\n").unwrap();
    let w = |p: &str, t: &str| {
        let h = root.join(p);
        fs::create_dir_all(h.parent().unwrap()).unwrap();
        fs::write(h, t).unwrap();
    };
    w(
        "etc/passwd",
        "root:x:0:0::/root:/bin/sh\ncyrus:x:96:12::/var/lib/imap:/bin/false\n",
    );
    w("etc/group", "root:x:0:\nmail:x:12:\n");
    w(
        "etc/pam.d/imap",
        "auth required pam_sss.so\naccount required pam_sss.so\n",
    );
    w("etc/imapd.conf", "sasl_pwcheck_method: saslauthd\n");
    w("etc/sysconfig/saslauthd", "SASLAUTHD_AUTHMECH=pam\n");
    w(
        "etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n",
    );
    w("etc/app/app.conf", "listen = 993\n");
    w("srv/sshd.d/.keep", "");
    std::os::unix::fs::symlink("/srv/sshd.d", root.join("etc/ssh/sshd_config.d")).unwrap();

    let o = old_kernel_guard(&root, Some(&store), &["--json", "snapshot"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(json(&o)["entries"].as_u64().unwrap() > 5, "{}", text(&o));

    // the upgrade
    let imap = fs::read(root.join("etc/pam.d/imap")).unwrap();
    fs::remove_file(root.join("etc/pam.d/imap")).unwrap();
    fs::write(
        root.join("srv/sshd.d/50-cloud-init.conf"),
        "PasswordAuthentication yes\n",
    )
    .unwrap();
    fs::remove_dir_all(root.join("etc/app")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("etc/app")).unwrap();

    let o = old_kernel_guard(&root, Some(&store), &["--json", "check"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let v = json(&o);
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"pam/service-vanished"), "{ids:?}");
    // found through the absolute link, inside the root (RESOLVE_IN_ROOT's
    // way), never the host's /srv
    assert!(ids.contains(&"ssh/password-auth-effective"), "{ids:?}");

    let o = old_kernel_guard(
        &root,
        Some(&store),
        &["--yes", "restore", "/etc/pam.d/imap"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::read(root.join("etc/pam.d/imap")).unwrap(), imap);
    // /etc/app is a link out of the root now: refused, nothing written
    // through it
    let o = old_kernel_guard(
        &root,
        Some(&store),
        &["--yes", "restore", "/etc/app/app.conf"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/etc/app is a symlink"),
        "{}",
        text(&o)
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        1,
        "written outside the root: {}",
        text(&o)
    );
    assert_eq!(
        fs::read_to_string(outside.join("host.conf")).unwrap(),
        "the host's own\n"
    );

    let o = old_kernel_guard(&root, Some(&store), &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = old_kernel_guard(&root, Some(&store), &["--json", "check"]);
    let v = json(&o);
    assert!(
        common::with_id(&v, "pam/service-vanished").is_empty(),
        "{}",
        text(&o)
    );
}

/// The default store of a --root lies in that root: a symlink it left in
/// the store is refused on a 4.4 kernel as on a new one.
#[test]
fn a_symlink_in_the_roots_store_is_refused_without_openat2() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let store = root.join("var/lib/guard");
    fs::create_dir_all(&store).unwrap();
    let outside = d.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("precious"), "host file\n").unwrap();
    std::os::unix::fs::symlink(&outside, store.join("tmp")).unwrap();
    let o = old_kernel_guard(&root, None, &["snapshot"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("a symlink"),
        "{}",
        text(&o)
    );
    assert_eq!(
        fs::read_to_string(outside.join("precious")).unwrap(),
        "host file\n"
    );
}
