//! "Secrets never leave the store" (DESIGN §2), end to end: the content of a
//! file others cannot read — by its own mode, or because a directory above
//! it is closed to them — never reaches `guard diff`, `guard check` (text or
//! JSON, messages, evidence or details), whichever snapshot or live side
//! holds it; and what guard writes stays private whatever the umask.

mod common;
use std::os::unix::fs::PermissionsExt;

use common::*;

/// Everything a command printed, stdout and stderr, as text.
fn printed(s: &Sys, args: &[&str]) -> String {
    let out = s.cmd().args(args).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `diff` and `check`, as text and as JSON, with `extra` arguments.
fn every_output(s: &Sys, extra: &[&str]) -> String {
    let mut all = String::new();
    for cmd in ["diff", "check"] {
        for json in [false, true] {
            let mut a = vec![cmd];
            a.extend_from_slice(extra);
            if json {
                a.push("--json");
            }
            all.push_str(&printed(s, &a));
        }
    }
    all
}

fn assert_hidden(all: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

#[test]
fn files_in_directories_closed_to_others_are_not_shown() {
    let s = Sys::new();
    // a 0644 file is still private inside a 0700 or 0710 directory (as
    // wg-quick and Debian's /etc/ssl/private leave them)
    s.write(
        "/etc/wireguard/wg0.conf",
        "[Interface]\nPrivateKey = WGKEY1\n",
    );
    s.chmod("/etc/wireguard", 0o700);
    s.write("/etc/ssl/private/mail.pem", "KEY SSLKEY1\n");
    s.chmod("/etc/ssl/private/mail.pem", 0o644);
    s.chmod("/etc/ssl/private", 0o710);
    s.write("/etc/motd", "PUBLIC1\n");
    s.snapshot();
    s.write(
        "/etc/wireguard/wg0.conf",
        "[Interface]\nPrivateKey = WGKEY2\n",
    );
    s.write("/etc/ssl/private/mail.pem", "KEY SSLKEY2\n");
    s.write("/etc/motd", "PUBLIC2\n");
    let all = every_output(&s, &[]);
    assert_hidden(&all, &["WGKEY", "SSLKEY"]);
    assert!(all.contains("not world-readable"), "{all}");
    // a world-readable file is still diffed
    assert!(all.contains("+PUBLIC2"), "{all}");

    // between two snapshots, either side's directory decides: opened to
    // others since, the old content was private when it was recorded
    s.cmd()
        .args(["snapshot", "--label", "second"])
        .assert()
        .success();
    s.chmod("/etc/wireguard", 0o755);
    s.write(
        "/etc/wireguard/wg0.conf",
        "[Interface]\nPrivateKey = WGKEY3\n",
    );
    let all = every_output(&s, &[]);
    assert_hidden(&all, &["WGKEY"]);
}

#[test]
fn a_mode_change_either_way_hides_both_sides() {
    let s = Sys::new();
    s.write("/etc/app/token", "TOKEN1\n");
    s.write("/etc/app/opened", "OPENED1\n");
    s.chmod("/etc/app/opened", 0o600);
    s.snapshot();
    // made private after holding the secret, and made public after
    s.write("/etc/app/token", "TOKEN2\n");
    s.chmod("/etc/app/token", 0o600);
    s.write("/etc/app/opened", "OPENED2\n");
    s.chmod("/etc/app/opened", 0o644);
    assert_hidden(&every_output(&s, &[]), &["TOKEN", "OPENED"]);
    s.cmd()
        .args(["snapshot", "--label", "after"])
        .assert()
        .success();
    let out = s.cmd().args(["list", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for args in [["diff", ids[0], ids[1]], ["diff", ids[1], ids[0]]] {
        let mut all = printed(&s, &args);
        all.push_str(&printed(&s, &[args[0], args[1], args[2], "--json"]));
        assert_hidden(&all, &["TOKEN", "OPENED"]);
    }
}

#[test]
fn user_xattrs_of_private_files_are_not_shown() {
    let s = Sys::new();
    s.write("/etc/app/private", "x\n");
    s.chmod("/etc/app/private", 0o600);
    s.write("/etc/app/public", "x\n");
    let set = |p: &str, v: &str| {
        rustix::fs::setxattr(
            s.path(p).as_path(),
            "user.note",
            v.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap()
    };
    set("/etc/app/private", "XATTRSECRET1");
    set("/etc/app/public", "XATTRPUBLIC1");
    s.snapshot();
    set("/etc/app/private", "XATTRSECRET2");
    set("/etc/app/public", "XATTRPUBLIC2");
    let all = every_output(&s, &[]);
    // reading a user.* xattr needs read permission on the file: it is the
    // file's data, not metadata anyone may see
    assert_hidden(&all, &["XATTRSECRET"]);
    assert!(all.contains("xattr user.note (value not shown"), "{all}");
    assert!(all.contains("XATTRPUBLIC2"), "{all}");
}

#[test]
fn check_evidence_does_not_quote_private_files() {
    let s = Sys::new();
    s.write(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\n",
    );
    // cloud-init writes its drop-in 0600
    s.write(
        "/etc/ssh/sshd_config.d/50-cloud-init.conf",
        "PasswordAuthentication yes # DROPINSECRET\n\
         Match User MATCHSECRET Address 10.9.8.0/24\n  PermitRootLogin yes\n",
    );
    s.chmod("/etc/ssh/sshd_config.d/50-cloud-init.conf", 0o600);
    let all = printed(&s, &["check"]) + &printed(&s, &["check", "--json"]);
    assert_hidden(&all, &["DROPINSECRET", "MATCHSECRET", "10.9.8.0"]);

    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = with_id(&v, "ssh/password-auth-effective");
    // the finding still says what wins and where, by path and line
    let pw = f
        .iter()
        .find(|f| {
            f["message"]
                .as_str()
                .unwrap()
                .starts_with("ssh accepts passwords:")
        })
        .unwrap_or_else(|| panic!("{v:#}"));
    let ev = pw["evidence"].as_array().unwrap();
    assert_eq!(ev[0]["path"], "/etc/ssh/sshd_config.d/50-cloud-init.conf");
    assert_eq!(ev[0]["line"], 1);
    assert!(ev[0]["text"].is_null(), "{v:#}");
    assert!(ev[0]["note"]
        .as_str()
        .unwrap()
        .contains("not world-readable"));
    // a line of the readable main file is still quoted
    assert_eq!(ev[1]["text"], "PasswordAuthentication no");
    let m = f
        .iter()
        .find(|f| f["message"].as_str().unwrap().contains("root login"))
        .unwrap_or_else(|| panic!("{v:#}"));
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("the Match block at /etc/ssh/sshd_config.d/50-cloud-init.conf:2"),
        "{m:#}"
    );
}

#[test]
fn a_vendor_file_read_instead_is_judged_by_its_own_mode() {
    let s = Sys::new();
    s.write("/etc/nsswitch.conf", "passwd: files\n");
    s.write("/usr/etc/nsswitch.conf", "passwd: files VENDORSECRET\n");
    s.chmod("/usr/etc/nsswitch.conf", 0o600);
    s.snapshot();
    s.rm("/etc/nsswitch.conf");
    let (_, v) = s.check();
    let nss = with_id(&v, "nss/changed");
    assert_eq!(nss.len(), 1, "{v:#}");
    assert!(
        nss[0]["message"]
            .as_str()
            .unwrap()
            .contains("not world-readable"),
        "{v:#}"
    );
    assert_hidden(
        &(printed(&s, &["check"]) + &printed(&s, &["check", "--json"])),
        &["VENDORSECRET"],
    );
}

#[test]
fn an_include_beneath_a_directory_closed_to_others_is_not_shown() {
    let s = Sys::new();
    // the snapshot records /srv/mail/etc, never /srv/mail above it: its
    // 0700 still keeps a 0644 file beneath private
    s.write(
        "/etc/guard/guard.toml",
        "version = 1\ninclude = [\"/srv/mail/etc\"]\n",
    );
    s.write("/srv/mail/etc/db.conf", "password = INCSECRET1\n");
    s.chmod("/srv/mail", 0o700);
    s.snapshot();
    s.write("/srv/mail/etc/db.conf", "password = INCSECRET2\n");
    let all = every_output(&s, &[]);
    assert_hidden(&all, &["INCSECRET"]);
    assert!(all.contains("not world-readable"), "{all}");
    // opened to others, the same include is diffed
    s.chmod("/srv/mail", 0o755);
    assert!(printed(&s, &["diff"]).contains("+password = INCSECRET2"));
}

#[test]
fn a_pending_merge_does_not_show_the_private_file_a_symlink_leads_to() {
    let s = Sys::new();
    // the active file is a symlink (0777 itself) to a private file
    s.write("/etc/app/real.conf", "password = LINKSECRET\n");
    s.chmod("/etc/app/real.conf", 0o600);
    s.symlink("real.conf", "/etc/app/app.conf");
    s.write("/etc/app/open.conf", "greeting = hello\n");
    s.symlink("open.conf", "/etc/app/link.conf");
    s.snapshot();
    s.write("/etc/app/app.conf.pacnew", "password = changeme\n");
    s.write("/etc/app/link.conf.pacnew", "greeting = PUBLICNEW\n");
    let all = printed(&s, &["check"]) + &printed(&s, &["check", "--json"]);
    assert_hidden(&all, &["LINKSECRET"]);
    assert!(all.contains("pkg/pending-merge"), "{all}");
    assert!(all.contains("not world-readable"), "{all}");
    // a symlink to a readable file is still diffed
    assert!(all.contains("+greeting = PUBLICNEW"), "{all}");
}

#[test]
fn nothing_guard_writes_is_open_to_others_under_umask_000() {
    let s = Sys::new();
    s.write("/etc/shadow", "root:$6$SHADOW:19000::::::\n");
    s.chmod("/etc/shadow", 0o600);
    s.write("/etc/motd", "hi\n");
    // `sh -c 'umask 000; exec guard …'`: the umask a careless caller set
    let guard = assert_cmd::cargo::cargo_bin("guard");
    let run = |args: &[&str]| {
        let mut argv = vec![
            "-c".to_string(),
            "umask 000; exec \"$@\"".into(),
            "sh".into(),
            guard.display().to_string(),
            "--root".into(),
            s.root().display().to_string(),
            "--store".into(),
            s.store.path().join("store").display().to_string(),
            "--no-progress".into(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = guard::exec::output(&guard::exec::Cmd::new("sh").args(&argv)).unwrap();
        assert!(
            out.status.code().is_some_and(|c| c < 3),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["snapshot"]);
    s.write("/etc/motd", "changed\n");
    run(&["check", "--ack", "file/modified:/etc/motd"]);
    run(&["snapshot", "--kind", "timer"]);
    let store = s.store.path().join("store");
    for e in walkdir::WalkDir::new(&store) {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o077,
            0,
            "{} is {mode:04o}: open to others",
            e.path().display()
        );
    }
}
