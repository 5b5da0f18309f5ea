//! sshd: the computed effective configuration held against the real
//! `sshd -T` on a corpus of configurations (tests/sshd_corpus), and
//! incident 2 end to end (a cloud-init drop-in included first wins).

mod common;
use common::*;

use std::path::Path;

use guard::checks::{ssh, Live};
use guard::sysroot::{SysPath, SysRoot};

const KEYS: &[&str] = &[
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "permitemptypasswords",
    "permitrootlogin",
    "usepam",
    "pubkeyauthentication",
    "x11forwarding",
    "maxauthtries",
];

fn copy_case(src: &Path, dst: &Path, dir: &str) {
    for e in walkdir::WalkDir::new(src) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(src).unwrap();
        let to = dst.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            let t = std::fs::read_to_string(e.path()).unwrap();
            std::fs::write(&to, t.replace("@D@", dir)).unwrap();
        }
    }
}

/// sshd -T's view: keyword → value, aliases folded like guard does.
fn sshd_t(
    config: &Path,
    hostkey: &Path,
    conn: Option<&str>,
) -> std::collections::BTreeMap<String, String> {
    // sshd refuses to run without its privilege separation directory
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut argv = vec![
        "/usr/sbin/sshd",
        "-T",
        "-f",
        config.to_str().unwrap(),
        "-h",
        hostkey.to_str().unwrap(),
    ];
    if let Some(c) = conn {
        argv.extend(["-C", c]);
    }
    let out = run(&argv);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| {
            let v = if v == "without-password" {
                "prohibit-password"
            } else {
                v
            };
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn effective_config_matches_sshd_t_on_the_corpus() {
    let keys = tempfile::tempdir().unwrap();
    let hk = keys.path().join("hostkey");
    host_key(&hk);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sshd_corpus");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "the corpus has {} cases", cases.len());
    let host = SysRoot::open(Path::new("/")).unwrap();
    let live = Live(&host);
    let mut failures = Vec::new();
    let mut matched = 0;
    for case in &cases {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap().to_string();
        copy_case(case, d.path(), &dir);
        let main = d.path().join("sshd_config");
        let want = sshd_t(&main, &hk, None);
        let got = ssh::effective(&live, &SysPath::new(main.to_str().unwrap()));
        // the first `Match User NAME` block: what it sets is what sshd
        // uses for a connection by NAME (Match values override global ones)
        if let Some(m) = got.matches.first() {
            if let Some(user) = m.criteria.strip_prefix("User ") {
                matched += 1;
                let conn = format!("user={user},host=client.example,addr=192.0.2.1");
                let under = sshd_t(&main, &hk, Some(&conn));
                for (k, set) in &m.settings {
                    if under.get(k) != Some(&set.value) {
                        failures.push(format!(
                            "{} (Match {}): {k}: guard {:?}, sshd -T -C {:?}",
                            case.file_name().unwrap().to_string_lossy(),
                            m.criteria,
                            set.value,
                            under.get(k)
                        ));
                    }
                }
            }
        }
        for k in KEYS {
            let w = want.get(*k).unwrap_or_else(|| panic!("sshd -T has no {k}"));
            let g = got.value(k);
            if &g != w {
                failures.push(format!(
                    "{}: {k}: guard {g:?}, sshd -T {w:?}",
                    case.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        matched >= 5,
        "only {matched} Match blocks were held to sshd -T -C"
    );
}

fn cloud_box() -> Sys {
    let s = Sys::new();
    s.write(
        "/etc/ssh/sshd_config",
        "# admin hardening\nInclude /etc/ssh/sshd_config.d/*.conf\n\
         PasswordAuthentication no\nPermitRootLogin no\nUsePAM yes\n",
    );
    s
}

#[test]
fn cloud_init_dropin_that_wins_is_critical() {
    let s = cloud_box();
    s.snapshot();
    s.write(
        "/etc/ssh/sshd_config.d/50-cloud-init.conf",
        "PasswordAuthentication yes\nMatch User backup\n  PasswordAuthentication no\n",
    );
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/password-auth-effective");
    assert_eq!(f.len(), 1, "{v:#}");
    let d = f[0]["detail"].as_str().unwrap();
    assert!(
        d.contains("Match User backup") && d.contains("PasswordAuthentication no"),
        "{d}"
    );
    assert_eq!(
        f[0]["paths"][0],
        "/etc/ssh/sshd_config.d/50-cloud-init.conf"
    );
    let ev = f[0]["evidence"].as_array().unwrap();
    assert_eq!(ev[0]["path"], "/etc/ssh/sshd_config.d/50-cloud-init.conf");
    assert_eq!(ev[0]["line"], 1);
    assert_eq!(ev[1]["path"], "/etc/ssh/sshd_config");
    assert_eq!(ev[1]["line"], 3);
    assert_eq!(ev[1]["text"], "PasswordAuthentication no");
    // the drop-in is explained by the specific finding, not file/added
    assert_eq!(
        for_path(&v, "/etc/ssh/sshd_config.d/50-cloud-init.conf").len(),
        1
    );
    assert_eq!(s.verdict(), "1 critical: ssh accepts passwords");
}

/// A guarded root's drop-ins that include their own directory: sshd stops
/// at its 16th level ("Too many recursive configuration includes"); guard
/// went on with every sibling at every level, 3^16 reads for three
/// files, and `check` never ended.
#[test]
fn drop_ins_that_include_each_other_do_not_hang_the_check() {
    let s = Sys::new();
    s.write(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n",
    );
    for n in ["a", "b", "c"] {
        s.write(
            &format!("/etc/ssh/sshd_config.d/{n}.conf"),
            "Include /etc/ssh/sshd_config.d/*.conf\n",
        );
    }
    #[allow(clippy::disallowed_methods)] // the binary, to be killed if it hangs
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_guard"))
        .arg("--root")
        .arg(s.root())
        .arg("--store")
        .arg(s.store.path())
        .args(["--no-progress", "check", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("guard check still running after 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // sshd itself refuses this ("Too many recursive configuration
    // includes") and does not start: that is the finding, not a guess at
    // what it would accept
    let mut doc = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut doc).unwrap();
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(status.code(), Some(2), "{v:#}");
    let f = with_id(&v, "ssh/config-refused");
    assert_eq!(f.len(), 1, "{v:#}");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("sshd will not start"),
        "{v:#}"
    );
    assert!(
        with_id(&v, "ssh/password-auth-effective").is_empty(),
        "{v:#}"
    );
}

/// A drop-in larger than guard reads (a sparse 65 MiB one in a hostile
/// image) is read whole by sshd, which takes its `PasswordAuthentication
/// yes`: guard cannot say what sshd accepts then, and must not say OK.
#[test]
fn a_dropin_too_large_to_read_is_never_taken_for_absent() {
    let s = Sys::new();
    s.write(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n",
    );
    s.write(
        "/etc/ssh/sshd_config.d/00-big.conf",
        "PasswordAuthentication yes\n",
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.path("/etc/ssh/sshd_config.d/00-big.conf"))
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/config-unreadable");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["paths"][0], "/etc/ssh/sshd_config.d/00-big.conf");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 64 MiB"),
        "{v:#}"
    );
}

#[test]
fn found_without_a_snapshot_and_quiet_when_safe() {
    let s = cloud_box();
    s.write(
        "/etc/ssh/sshd_config.d/50-cloud-init.conf",
        "PermitRootLogin yes\n",
    );
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/password-auth-effective");
    assert!(f[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("ssh permits root login"));

    // a drop-in that agrees with the admin gives no finding
    s.write(
        "/etc/ssh/sshd_config.d/50-cloud-init.conf",
        "PermitRootLogin no\nPasswordAuthentication no\n",
    );
    let (code, v) = s.check();
    assert!(
        with_id(&v, "ssh/password-auth-effective").is_empty(),
        "{v:#}"
    );
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn vendor_config_on_opensuse_compared_with_the_snapshot() {
    let s = Sys::new();
    s.write("/usr/etc/ssh/sshd_config", "PasswordAuthentication no\n");
    s.snapshot();
    s.write("/usr/etc/ssh/sshd_config", "# new vendor default\n");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/password-auth-effective");
    let msg = f[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("by default") && msg.contains("snapshot"),
        "{msg}"
    );
}

/// A fresh ed25519 host key at `hk`: `sshd -T` wants one to start.
fn host_key(hk: &Path) {
    run(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        hk.to_str().unwrap(),
    ]);
}

/// The real `sshd -T` (with `-C conn` when given) on the sshd_config of
/// a test root: absolute `/etc/ssh` paths are pointed into the root, so
/// sshd reads the root's drop-ins and never this machine's.
fn sshd_t_of(s: &Sys, conn: Option<&str>) -> std::collections::BTreeMap<String, String> {
    let hk = s.path("/hostkey");
    if !hk.exists() {
        host_key(&hk);
    }
    let text = std::fs::read_to_string(s.path("/etc/ssh/sshd_config")).unwrap();
    let etc_ssh = format!("{}/etc/ssh/", s.root().display());
    let cfg = s.path("/sshd_config.T");
    std::fs::write(&cfg, text.replace("/etc/ssh/", &etc_ssh)).unwrap();
    sshd_t(&cfg, &hk, conn)
}

#[test]
fn dropin_turning_key_logins_off_is_critical() {
    let s = cloud_box();
    s.snapshot();
    s.write(
        "/etc/ssh/sshd_config.d/40-hardening.conf",
        "PubkeyAuthentication no\n",
    );
    // sshd itself agrees the drop-in wins: keys are refused, and with
    // passwords off nobody gets in
    let t = sshd_t_of(&s, None);
    assert_eq!(t["pubkeyauthentication"], "no");
    assert_eq!(t["passwordauthentication"], "no");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/pubkey-auth-off");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "critical");
    let msg = f[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("ssh refuses key logins") && msg.contains("it was yes in the snapshot"),
        "{msg}"
    );
    assert_eq!(
        f[0]["evidence"][0]["path"],
        "/etc/ssh/sshd_config.d/40-hardening.conf"
    );
    assert!(f[0]["fix"]
        .as_str()
        .unwrap()
        .contains("PubkeyAuthentication yes"));
    assert!(
        with_id(&v, "ssh/password-auth-effective").is_empty(),
        "{v:#}"
    );

    // turning keys back on (or leaving them on) is no finding
    s.write(
        "/etc/ssh/sshd_config.d/40-hardening.conf",
        "PubkeyAuthentication yes\n",
    );
    assert_eq!(sshd_t_of(&s, None)["pubkeyauthentication"], "yes");
    let (code, v) = s.check();
    assert!(with_id(&v, "ssh/pubkey-auth-off").is_empty(), "{v:#}");
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn root_login_weakened_to_key_only_says_so_and_recommends_the_old_value() {
    let s = cloud_box();
    s.snapshot();
    s.write(
        "/etc/ssh/sshd_config.d/50-cloud-init.conf",
        "PermitRootLogin without-password\n",
    );
    assert_eq!(sshd_t_of(&s, None)["permitrootlogin"], "prohibit-password");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/password-auth-effective");
    assert_eq!(f.len(), 1, "{v:#}");
    let msg = f[0]["message"].as_str().unwrap();
    // root may log in with a key now, never with a password
    assert!(
        msg.starts_with("ssh permits root login with a key:"),
        "{msg}"
    );
    let fix = f[0]["fix"].as_str().unwrap();
    // the value in effect is no fix; the snapshot's `no` is
    assert!(fix.contains("`PermitRootLogin no`"), "{fix}");
    assert_eq!(s.verdict(), "1 critical: ssh permits root login with a key");
}

#[test]
fn match_block_turning_passwords_and_root_on_is_critical() {
    let s = cloud_box();
    s.write(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n\
         PermitRootLogin no\nMatch User backup\n  PasswordAuthentication yes\n",
    );
    s.snapshot();
    s.write(
        "/etc/ssh/sshd_config.d/60-everyone.conf",
        "Match User *\n  PasswordAuthentication yes\n  PermitRootLogin yes\n",
    );
    // sshd applies the block to any user while the global values stay no
    let t = sshd_t_of(&s, None);
    assert_eq!(t["passwordauthentication"], "no");
    let u = sshd_t_of(&s, Some("user=alice,host=x,addr=1.2.3.4"));
    assert_eq!(u["passwordauthentication"], "yes");
    assert_eq!(u["permitrootlogin"], "yes");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = for_path(&v, "/etc/ssh/sshd_config.d/60-everyone.conf");
    assert_eq!(f.len(), 2, "replaces file/added: {v:#}");
    let msgs: Vec<&str> = f.iter().map(|f| f["message"].as_str().unwrap()).collect();
    assert!(
        msgs.iter()
            .any(|m| m
                .starts_with("ssh accepts passwords for Match User *: PasswordAuthentication yes")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m
            .starts_with("ssh permits root login with a password for Match User *")
            && m.contains("it was no in the snapshot")),
        "{msgs:?}"
    );
    assert!(f.iter().all(|f| f["severity"] == "critical"));
    assert_eq!(f[0]["evidence"][0]["text"], "Match User *");
    // the admin's own `Match User backup` from the snapshot is no finding
    assert!(!msgs.iter().any(|m| m.contains("backup")), "{msgs:?}");
    assert_eq!(for_path(&v, "/etc/ssh/sshd_config").len(), 0, "{v:#}");

    // before any snapshot the admin's block in sshd_config is what they
    // meant; the drop-in's is still judged against the global value
    let s2 = Sys::new();
    for p in [
        "/etc/ssh/sshd_config",
        "/etc/ssh/sshd_config.d/60-everyone.conf",
    ] {
        s2.write(p, &std::fs::read_to_string(s.path(p)).unwrap());
    }
    let (code, v) = s2.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/password-auth-effective");
    assert_eq!(f.len(), 2, "{v:#}");
    assert!(f
        .iter()
        .all(|f| f["message"].as_str().unwrap().contains("Match User *:")));
}

/// A drop-in whose name is not UTF-8 is matched by sshd's `Include` glob
/// like any other (sshd -T says so): guard must read it too, not look for
/// a name with U+FFFD in it and find nothing. Its path is written `\xNN`.
#[test]
fn a_dropin_whose_name_is_not_utf8_is_read_like_sshd_does() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let s = cloud_box();
    s.snapshot();
    let dir = s.path("/etc/ssh/sshd_config.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(OsStr::from_bytes(b"50-cl\xffud-init.conf")),
        "PasswordAuthentication yes\n",
    )
    .unwrap();
    // the oracle: sshd, given the same directory, takes the drop-in's value
    let keys = tempfile::tempdir().unwrap();
    let hk = keys.path().join("hostkey");
    host_key(&hk);
    let cfg = keys.path().join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Include {}/*.conf\nPasswordAuthentication no\n",
            dir.display()
        ),
    )
    .unwrap();
    assert_eq!(sshd_t(&cfg, &hk, None)["passwordauthentication"], "yes");

    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/password-auth-effective");
    assert_eq!(f.len(), 1, "{v:#}");
    let name = "/etc/ssh/sshd_config.d/50-cl\\xffud-init.conf";
    assert_eq!(f[0]["paths"][0], name, "{v:#}");
    // explained by the specific finding, not file/added as well
    assert_eq!(for_path(&v, name).len(), 1, "{v:#}");
}

/// A release upgrade or image tool that regenerates the host keys (here
/// the real `ssh-keygen -A`, what Arch's sshdgenkeys.service and
/// openSUSE's sshd-gen-keys-start run) changes the server's identity:
/// one warning naming every key type, not a `file/modified` per key file;
/// its fix brings the old identity back byte-exact. A private key gone is
/// critical (sshd may not start), one finding for all of them.
#[test]
fn regenerated_host_keys_are_one_finding_and_restore_brings_the_identity_back() {
    let s = Sys::new();
    s.write("/etc/ssh/sshd_config", "PasswordAuthentication no\n");
    let root = s.root().to_str().unwrap();
    run(&["ssh-keygen", "-A", "-f", root]);
    let keys: Vec<String> = std::fs::read_dir(s.path("/etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    assert!(keys.len() >= 4, "ssh-keygen -A made {keys:?}");
    let before: Vec<(String, Vec<u8>)> = keys
        .iter()
        .map(|k| {
            (
                k.clone(),
                std::fs::read(s.path(&format!("/etc/ssh/{k}"))).unwrap(),
            )
        })
        .collect();
    s.snapshot();

    for k in &keys {
        s.rm(&format!("/etc/ssh/{k}"));
    }
    run(&["ssh-keygen", "-A", "-f", root]);
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    let f = with_id(&v, "ssh/host-keys-changed");
    assert_eq!(f.len(), 1, "{v:#}");
    let msg = f[0]["message"].as_str().unwrap();
    for t in ["ed25519", "rsa", "ecdsa"] {
        assert!(msg.contains(t), "{msg}");
    }
    assert!(
        msg.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{msg}"
    );
    assert_eq!(f[0]["paths"].as_array().unwrap().len(), keys.len(), "{v:#}");
    assert!(
        with_id(&v, "file/modified").is_empty(),
        "the key files are also reported one by one: {v:#}"
    );
    // the private keys' content is never shown
    assert!(!v.to_string().contains("PRIVATE KEY"), "{v:#}");

    // The fix, as written: `guard restore PATH…`, then the identity is the
    // one clients know.
    let fix = f[0]["fix"].as_str().unwrap();
    let paths: Vec<&str> = fix
        .split_once("guard restore ")
        .unwrap()
        .1
        .split(", then")
        .next()
        .unwrap()
        .split(' ')
        .collect();
    s.ok(&[&["--yes", "restore"][..], &paths].concat());
    for (k, bytes) in &before {
        assert_eq!(
            &std::fs::read(s.path(&format!("/etc/ssh/{k}"))).unwrap(),
            bytes,
            "{k}"
        );
    }
    assert_eq!(s.check().0, 0);

    // A private key gone: critical, one finding, and the verdict says so.
    s.rm("/etc/ssh/ssh_host_rsa_key");
    s.rm("/etc/ssh/ssh_host_rsa_key.pub");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/host-keys-vanished");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "critical");
    assert!(with_id(&v, "file/vanished").is_empty(), "{v:#}");
    assert_eq!(s.verdict(), "1 critical: sshd's host keys vanished");

    // Only a public half gone: sshd still has its key, a warning.
    run(&["ssh-keygen", "-A", "-f", root]);
    s.snapshot();
    s.rm("/etc/ssh/ssh_host_ed25519_key.pub");
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(
        with_id(&v, "ssh/host-keys-vanished")[0]["severity"],
        "warning"
    );
}
