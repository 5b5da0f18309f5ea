//! Pending merges, nsswitch, fstab/crypttab and accounts end to end, and
//! acknowledging a finding so it stops failing monitors.

mod common;
use common::*;
use serde_json::Value;

fn base() -> Sys {
    let s = Sys::new();
    s.write(
        "/etc/ssh/sshd_config",
        "PasswordAuthentication no\nUsePAM yes\n",
    )
    .write(
        "/etc/nsswitch.conf",
        "passwd: files sss\ngroup: files sss\nhosts: files dns\n",
    )
    .write(
        "/etc/fstab",
        "UUID=1 / ext4 defaults 0 1\n/dev/vdb /srv/mail xfs noatime 0 0\n",
    )
    .write("/etc/crypttab", "mail UUID=abc /etc/keys/mail.key luks\n")
    .write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/bash\ncyrus:x:96:12::/var/lib/imap:/bin/sh\n",
    )
    .write("/etc/group", "root:x:0:\nmail:x:12:\n")
    .write(
        "/etc/shadow",
        "root:$6$SECRETHASH:19000::::::\ncyrus:!:19000::::::\n",
    )
    .write("/etc/motd", "hello\n");
    s.chmod("/etc/crypttab", 0o600);
    s.chmod("/etc/shadow", 0o600);
    s
}

#[test]
fn pacnew_and_rpmnew_wait_to_be_merged_with_diffs_only_when_readable() {
    let s = base();
    s.snapshot();
    s.write(
        "/etc/ssh/sshd_config.pacnew",
        "PasswordAuthentication no\nUsePAM no\nKbdInteractiveAuthentication no\n",
    );
    s.write("/etc/shadow.rpmnew", "root:$6$OTHERHASH:19001::::::\n");
    s.chmod("/etc/shadow.rpmnew", 0o600);
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    let m = with_id(&v, "pkg/pending-merge");
    assert_eq!(m.len(), 2, "{v:#}");
    let pacnew = for_path(&v, "/etc/ssh/sshd_config.pacnew")[0];
    assert_eq!(pacnew["id"], "pkg/pending-merge");
    let d = pacnew["detail"].as_str().unwrap();
    assert!(d.contains("-UsePAM yes") && d.contains("+UsePAM no"), "{d}");
    assert!(pacnew["fix"].as_str().unwrap().contains("pacdiff"));
    let rpmnew = for_path(&v, "/etc/shadow.rpmnew")[0];
    assert!(rpmnew["fix"].as_str().unwrap().contains("rpmconf"));
    let all = v.to_string();
    assert!(!all.contains("HASH"), "shadow content leaked: {all}");
    let (_, text) = s.check_text();
    assert!(!text.contains("HASH"));
}

#[test]
fn nss_storage_and_accounts_changes_are_explained() {
    let s = base();
    s.snapshot();
    s.write(
        "/etc/nsswitch.conf",
        "passwd: files\ngroup: files sss\nhosts: files dns\n",
    );
    s.write("/etc/fstab", "UUID=1 / ext4 defaults 0 1\n");
    s.write("/etc/crypttab", "mail UUID=abc none luks\n");
    s.write("/etc/passwd", "root:x:0:0::/root:/bin/bash\n");
    s.write("/etc/shadow", "root:$6$NEWSECRETHASH:19001::::::\n");
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    let nss = with_id(&v, "nss/changed");
    assert_eq!(nss.len(), 1, "{v:#}");
    assert!(nss[0]["message"]
        .as_str()
        .unwrap()
        .contains("passwd: files sss -> files"));
    assert_eq!(nss[0]["evidence"][0]["line"], 1);
    let fstab = with_id(&v, "storage/fstab-changed");
    assert!(fstab[0]["message"]
        .as_str()
        .unwrap()
        .contains("/srv/mail removed"));
    let ct = with_id(&v, "storage/crypttab-changed");
    let msg = ct[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("not world-readable") && !msg.contains("mail.key"),
        "{msg}"
    );
    let acc = with_id(&v, "accounts/changed");
    assert!(acc[0]["message"]
        .as_str()
        .unwrap()
        .contains("cyrus removed"));
    assert!(!v.to_string().contains("HASH"), "{v:#}");
    // one finding per path: no file/modified for what a specific check explains
    assert_eq!(for_path(&v, "/etc/nsswitch.conf").len(), 1);
}

#[test]
fn ack_turns_a_finding_into_info_and_unack_brings_it_back() {
    let s = base();
    s.snapshot();
    s.write("/etc/motd", "maintenance tonight\n");
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(with_id(&v, "file/modified")[0]["severity"], "warning");

    s.cmd()
        .args(["check", "--ack", "file/modified:/etc//motd"])
        .assert()
        .success();
    let (code, v) = s.check();
    assert_eq!(code, 0, "acknowledged findings count as info: {v:#}");
    let f = with_id(&v, "file/modified");
    assert_eq!(f[0]["acknowledged"], true);
    assert_eq!(v["summary"]["warning"], 0);
    let (_, text) = s.check_text();
    assert!(text.contains("[acknowledged]"), "{text}");

    let out = s.cmd().args(["check", "--acks"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("file/modified:/etc/motd"));
    let out = s
        .cmd()
        .args(["check", "--acks", "--json"])
        .output()
        .unwrap();
    let acks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(acks["acks"][0]["path"], "/etc/motd");

    s.cmd()
        .args(["check", "--unack", "file/modified:/etc/motd"])
        .assert()
        .success();
    assert_eq!(s.check().0, 1);
    // unacknowledging what is not acknowledged is an error (exit 3)
    s.cmd()
        .args(["check", "--unack", "file/modified:/etc/motd"])
        .assert()
        .code(3);
    s.cmd()
        .args(["check", "--ack", "nonsense"])
        .assert()
        .code(3);
}

/// An acknowledgement covers the finding as it was when the admin looked
/// at it: a later, different change to the same path is a new finding that
/// fails monitors again — also where the finding's text cannot show the
/// difference (a file only root may read: "content changed" either way).
#[test]
fn an_ack_covers_the_finding_it_was_given_for_not_a_later_change() {
    let s = base();
    s.write("/etc/keys/mail.key", "key one\n");
    s.chmod("/etc/keys/mail.key", 0o600);
    s.snapshot();
    s.write("/etc/motd", "maintenance tonight\n");
    s.write("/etc/keys/mail.key", "key two\n");
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(with_id(&v, "file/modified").len(), 2, "{v:#}");
    for spec in [
        "file/modified:/etc/motd",
        "file/modified:/etc/keys/mail.key",
    ] {
        s.cmd().args(["check", "--ack", spec]).assert().success();
    }
    assert_eq!(s.check().0, 0);

    // the same path, changed again: not what was acknowledged
    s.write("/etc/motd", "rm -rf / tonight\n");
    s.write("/etc/keys/mail.key", "an intruder's key\n");
    let (code, v) = s.check();
    assert_eq!(code, 1, "a later change is a new finding: {v:#}");
    for p in ["/etc/motd", "/etc/keys/mail.key"] {
        let f = for_path(&v, p);
        assert_eq!(f[0]["id"], "file/modified", "{v:#}");
        assert!(f[0].get("acknowledged").is_none(), "{p}: {v:#}");
    }
    // acknowledging it again takes in the change
    s.cmd()
        .args(["check", "--ack", "file/modified:/etc/motd"])
        .assert()
        .success();
    let (_, v) = s.check();
    assert_eq!(for_path(&v, "/etc/motd")[0]["acknowledged"], true, "{v:#}");
    assert!(for_path(&v, "/etc/keys/mail.key")[0]
        .get("acknowledged")
        .is_none());

    // nothing to acknowledge: a clear error, exit 3, nothing recorded
    let out = s
        .cmd()
        .args(["check", "--ack", "file/vanished:/etc/motd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no file/vanished finding for /etc/motd"),
        "{err}"
    );
    let out = s.cmd().args(["check", "--acks"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("file/vanished"));
}

/// acks.json as guard wrote it before acknowledgements were pinned to the
/// finding (version 1, no fingerprints) still reads and still counts.
#[test]
fn acks_of_version_1_still_count() {
    let s = base();
    s.snapshot();
    s.write("/etc/motd", "maintenance tonight\n");
    std::fs::write(
        s.store.path().join("acks.json"),
        r#"{"version": 1, "acks": [{"finding": "file/modified", "path": "/etc/motd", "added": "2026-01-01T00:00:00Z"}]}"#,
    )
    .unwrap();
    let (code, v) = s.check();
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(for_path(&v, "/etc/motd")[0]["acknowledged"], true);
}

/// A merge leftover the admin removed after merging, as
/// `pkg/pending-merge` asks, is no admin's file gone missing.
#[test]
fn a_merged_and_removed_rpmnew_is_not_critical() {
    let s = base();
    s.write("/etc/foo/main.conf", "a = 1\n")
        .write("/etc/foo/main.conf.rpmnew", "a = 2\n");
    s.snapshot();
    s.rm("/etc/foo/main.conf.rpmnew");
    let (code, v) = s.check();
    let f = for_path(&v, "/etc/foo/main.conf.rpmnew");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["id"], "file/vanished");
    assert_eq!(f[0]["severity"], "info", "{v:#}");
    assert_eq!(code, 0, "{v:#}");
    // an admin's own file next to it is still critical
    s.rm("/etc/foo/main.conf");
    let (code, v) = s.check();
    assert_eq!(
        for_path(&v, "/etc/foo/main.conf")[0]["severity"],
        "critical"
    );
    assert_eq!(code, 2);
}

#[test]
fn a_pacnew_rewritten_by_the_upgrade_waits_to_be_merged_again() {
    let s = base();
    s.write("/etc/ssh/sshd_config.pacnew", "PasswordAuthentication no\n");
    s.snapshot();
    // the next package version overwrites the .pacnew still waiting
    s.write(
        "/etc/ssh/sshd_config.pacnew",
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
    );
    let (_, v) = s.check();
    let f = for_path(&v, "/etc/ssh/sshd_config.pacnew");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["id"], "pkg/pending-merge", "{v:#}");
    assert!(
        f[0]["detail"]
            .as_str()
            .unwrap()
            .contains("+KbdInteractiveAuthentication no"),
        "{v:#}"
    );
}

#[test]
fn a_lost_swap_a_lost_group_member_and_a_nologin_shell_are_explained() {
    let s = base();
    s.write(
        "/etc/fstab",
        "UUID=1 / ext4 defaults 0 1\n/dev/vda2 none swap sw 0 0\n/dev/vdc1 none swap sw 0 0\n",
    )
    .write("/etc/group", "root:x:0:\nmail:x:12:cyrus,postfix\n");
    s.snapshot();
    s.write(
        "/etc/fstab",
        "UUID=1 / ext4 defaults 0 1\n/dev/vdc1 none swap sw 0 0\n",
    )
    .write("/etc/group", "root:x:0:\nmail:x:12:postfix\n")
    .write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/bash\ncyrus:x:96:12::/var/lib/imap:/usr/sbin/nologin\n",
    );
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    let fstab = with_id(&v, "storage/fstab-changed");
    assert_eq!(fstab.len(), 1, "{v:#}");
    assert!(
        fstab[0]["message"]
            .as_str()
            .unwrap()
            .contains("swap /dev/vda2 removed"),
        "{v:#}"
    );
    let acc: Vec<&str> = with_id(&v, "accounts/changed")
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        acc.iter().any(|m| m.contains("members cyrus,postfix -> ")),
        "{acc:?}"
    );
    assert!(
        acc.iter().any(|m| m.contains("shell /usr/sbin/nologin")),
        "{acc:?}"
    );
}

/// A root whose files belong to the user running the test, named in its
/// own accounts files, with many files: what a real /etc looks like to a
/// check when /etc/group or /etc/passwd goes.
fn named_owners() -> Sys {
    use std::os::unix::fs::MetadataExt;
    let s = base();
    let md = std::fs::metadata(s.root()).unwrap();
    let (uid, gid) = (md.uid(), md.gid());
    s.write(
        "/etc/passwd",
        &format!("root:x:0:0::/root:/bin/bash\ncyrus:x:96:12::/var/lib/imap:/bin/sh\nme:x:{uid}:{gid}::/:/bin/sh\n"),
    )
    .write("/etc/group", &format!("root:x:0:\nmail:x:12:\nme:x:{gid}:\n"));
    for i in 0..40 {
        s.write(&format!("/etc/app/conf{i}"), "x\n");
    }
    s
}

#[test]
fn a_vanished_etc_group_is_one_critical_finding_not_a_meta_change_per_file() {
    let s = named_owners();
    s.snapshot();
    s.rm("/etc/group");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    assert!(with_id(&v, "file/meta-changed").is_empty(), "{v:#}");
    let acc = with_id(&v, "accounts/changed");
    assert_eq!(acc.len(), 1, "{v:#}");
    assert_eq!(acc[0]["severity"], "critical");
    assert_eq!(acc[0]["paths"][0], "/etc/group");
    let msg = acc[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("/etc/group vanished")
            && msg.contains("group names of")
            && msg.contains("no longer resolve"),
        "{msg}"
    );
    assert!(acc[0]["detail"].as_str().unwrap().contains("and "), "{v:#}");
    assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{v:#}");
    assert!(s.verdict().contains("/etc/group vanished"));
}

#[test]
fn an_emptied_etc_passwd_is_critical_and_summarised_once() {
    let s = named_owners();
    s.snapshot();
    s.write("/etc/passwd", "");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    assert!(with_id(&v, "file/meta-changed").is_empty(), "{v:#}");
    let acc = with_id(&v, "accounts/changed");
    assert_eq!(acc.len(), 1, "{v:#}");
    assert_eq!(acc[0]["severity"], "critical");
    let msg = acc[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("/etc/passwd was emptied: all users are gone")
            && msg.contains("owner names of"),
        "{msg}"
    );
    // a real owner change of one file is still its own finding
    s.write("/etc/passwd", "root:x:0:0::/root:/bin/bash\n");
    chown_to_a_stranger(&s.path("/etc/motd"));
    let (_, v) = s.check();
    let meta = with_id(&v, "file/meta-changed");
    assert_eq!(meta.len(), 1, "{v:#}");
    assert_eq!(meta[0]["paths"][0], "/etc/motd");
}

fn chown_to_a_stranger(p: &std::path::Path) {
    std::os::unix::fs::lchown(p, Some(4242), None).unwrap();
}

#[test]
fn nsswitch_that_moved_to_usr_etc_is_compared_with_what_glibc_reads_now() {
    let s = base();
    s.snapshot();
    // openSUSE: the package drops /etc/nsswitch.conf, glibc reads the
    // vendor copy, which has no sss
    s.rm("/etc/nsswitch.conf");
    s.write(
        "/usr/etc/nsswitch.conf",
        "passwd: files\ngroup: files sss\nhosts: files dns\n",
    );
    let (_, v) = s.check();
    let nss = with_id(&v, "nss/changed");
    assert_eq!(nss.len(), 1, "{v:#}");
    let msg = nss[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("now read from /usr/etc/nsswitch.conf")
            && msg.contains("passwd: files sss -> files")
            && !msg.contains("all name service sources are gone"),
        "{msg}"
    );
    assert_eq!(nss[0]["evidence"][0]["path"], "/usr/etc/nsswitch.conf");
}

#[test]
fn a_change_of_line_ends_is_visible_in_text_diffs() {
    let s = Sys::new();
    s.write("/etc/app.conf", "listen 80\nuser www\n");
    s.snapshot();
    // the same lines, now CRLF (an editor on Windows, a copy over SMB)
    s.write("/etc/app.conf", "listen 80\r\nuser www\r\n");
    let out = |args: &[&str]| {
        let o = s.cmd().args(args).output().unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let (diff, check) = (out(&["diff"]), out(&["check"]));
    for text in [&diff, &check] {
        assert!(text.contains("-listen 80\n"), "{text}");
        assert!(text.contains("+listen 80\\r\n"), "{text}");
        assert!(!text.contains('\r'), "{text:?}");
    }
    // JSON keeps the content exact
    let v: serde_json::Value = serde_json::from_str(&out(&["diff", "--json"])).unwrap();
    let d = v["changes"][0]["detail"].as_str().unwrap();
    assert!(d.contains("+listen 80\r\n"), "{d:?}");
}

/// A Debian release upgrade drops CA certificates (ca-certificates removes
/// `/usr/share/ca-certificates/mozilla/X.crt`) and update-ca-certificates
/// removes the links to them in `/etc/ssl/certs` (`X.pem` and the hash link
/// `abcd1234.0 -> X.pem`), which no package owns. They are no admin's lost
/// files (they were critical, 26 of them after bookworm -> trixie, above
/// the one PAM file that mattered), and restored they would dangle. An
/// admin's link whose target is still there, or lies under /usr/local, is
/// still the admin's loss.
#[test]
fn links_that_went_with_the_package_file_they_led_to_are_not_an_admins_loss() {
    let s = Sys::new();
    s.write("/usr/share/ca-certificates/mozilla/Old_CA.crt", "old\n");
    s.symlink(
        "/usr/share/ca-certificates/mozilla/Old_CA.crt",
        "/etc/ssl/certs/Old_CA.pem",
    );
    s.symlink("Old_CA.pem", "/etc/ssl/certs/abcd1234.0");
    // the admin's own: a link to a vendor file that stays, and one to a
    // certificate of their own under /usr/local
    s.write("/usr/share/zoneinfo/Europe/Berlin", "TZif\n");
    s.symlink("../usr/share/zoneinfo/Europe/Berlin", "/etc/localtime");
    s.write("/usr/local/share/ca-certificates/corp.crt", "corp\n");
    s.symlink(
        "/usr/local/share/ca-certificates/corp.crt",
        "/etc/ssl/certs/corp.pem",
    );
    s.snapshot();
    for p in [
        "/usr/share/ca-certificates/mozilla/Old_CA.crt",
        "/etc/ssl/certs/Old_CA.pem",
        "/etc/ssl/certs/abcd1234.0",
        "/etc/localtime",
        "/usr/local/share/ca-certificates/corp.crt",
        "/etc/ssl/certs/corp.pem",
    ] {
        s.rm(p);
    }
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    for p in ["/etc/ssl/certs/Old_CA.pem", "/etc/ssl/certs/abcd1234.0"] {
        let f = for_path(&v, p);
        assert_eq!(f.len(), 1, "{v:#}");
        assert_eq!(f[0]["id"], "file/vanished", "{v:#}");
        assert_eq!(f[0]["severity"], "info", "{v:#}");
        assert!(f[0]["fix"].is_null(), "restored it would dangle: {v:#}");
        assert!(
            f[0]["message"]
                .as_str()
                .unwrap()
                .contains("/usr/share/ca-certificates/mozilla/Old_CA.crt"),
            "{v:#}"
        );
    }
    for p in ["/etc/localtime", "/etc/ssl/certs/corp.pem"] {
        let f = for_path(&v, p);
        assert_eq!(f.len(), 1, "{v:#}");
        assert_eq!(f[0]["severity"], "critical", "{v:#}");
        assert_eq!(f[0]["fix"], format!("guard restore {p}"), "{v:#}");
    }

    // the restore plan tells them apart the same way
    let out = s
        .cmd()
        .args(["--json", "restore", "--vanished", "--dry-run"])
        .output()
        .unwrap();
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = plan["items"].as_array().expect("items");
    let dropped = |p: &str| {
        items
            .iter()
            .find(|i| i["path"] == p)
            .unwrap_or_else(|| panic!("{p}: {plan:#}"))["dropped"]
            .clone()
    };
    for p in ["/etc/ssl/certs/Old_CA.pem", "/etc/ssl/certs/abcd1234.0"] {
        assert_eq!(
            dropped(p),
            serde_json::json!({"by": [], "link_to": "/usr/share/ca-certificates/mozilla/Old_CA.crt"}),
            "{plan:#}"
        );
    }
    for p in ["/etc/localtime", "/etc/ssl/certs/corp.pem"] {
        assert_eq!(dropped(p), Value::Null, "{plan:#}");
    }
}

/// Debian 13's procps no longer ships `/etc/sysctl.conf`: dpkg-maintscript-
/// helper removes the obsolete conffile, or, when the admin modified it,
/// moves it to `/etc/sysctl.conf.dpkg-bak`, where nothing reads it (here,
/// IP forwarding is off after the next boot). That was a package file
/// vanished (warning) and an "admin's own file" added (info); it is one
/// finding for both paths that says the settings no longer apply and lists
/// them.
#[test]
fn a_modified_conffile_dpkg_set_aside_as_dpkg_bak_no_longer_applies() {
    let s = Sys::new();
    s.write(
        "/etc/sysctl.conf",
        "# /etc/sysctl.conf - Configuration file for setting system variables\n\
         #net.ipv4.ip_forward=1\nnet.ipv4.ip_forward=1\n",
    );
    s.snapshot();
    let text = std::fs::read_to_string(s.path("/etc/sysctl.conf")).unwrap();
    s.rm("/etc/sysctl.conf");
    s.write("/etc/sysctl.conf.dpkg-bak", &text);
    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    for p in ["/etc/sysctl.conf", "/etc/sysctl.conf.dpkg-bak"] {
        let f = for_path(&v, p);
        assert_eq!(f.len(), 1, "one finding for {p}: {v:#}");
        assert_eq!(f[0]["id"], "pkg/pending-merge", "{v:#}");
    }
    let f = for_path(&v, "/etc/sysctl.conf")[0];
    assert_eq!(f["severity"], "warning", "{v:#}");
    assert!(
        f["message"].as_str().unwrap().contains("no longer apply"),
        "{v:#}"
    );
    assert_eq!(
        f["detail"],
        "settings in /etc/sysctl.conf.dpkg-bak that no longer apply:\nnet.ipv4.ip_forward=1",
        "{v:#}"
    );
}

/// Arch's `update-ca-trust` (an alpm hook, run whenever a certificate
/// package changes) writes `/etc/ca-certificates/extracted/cadir/` from
/// the trust sources (`trust extract --format=pem-directory-hash`: a file
/// per certificate and a hash link to it), deletes the links in
/// `/etc/ssl/certs` that now dangle and links every file of cadir there.
/// None of it is a package's; when an upgrade drops a certificate, its
/// four paths go. They were four "admin's own files" lost, critical each:
/// a neglected box that misses a year of Mozilla removals got dozens. The
/// admin's own certificate, in `trust-source/anchors/`, stays critical.
#[test]
fn certificates_update_ca_trust_dropped_are_not_an_admins_loss() {
    let s = Sys::new();
    let cadir = "/etc/ca-certificates/extracted/cadir";
    for (name, hash) in [("Old_CA.pem", "abcd1234.0"), ("Kept_CA.pem", "1234abcd.0")] {
        s.write(&format!("{cadir}/{name}"), "-----BEGIN CERTIFICATE-----\n");
        s.symlink(name, &format!("{cadir}/{hash}"));
        for n in [name, hash] {
            s.symlink(
                &format!("../../ca-certificates/extracted/cadir/{n}"),
                &format!("/etc/ssl/certs/{n}"),
            );
        }
    }
    s.write(
        "/etc/ca-certificates/trust-source/anchors/corp.crt",
        "-----BEGIN CERTIFICATE-----\n",
    );
    s.snapshot();
    for p in [
        "/etc/ssl/certs/Old_CA.pem",
        "/etc/ssl/certs/abcd1234.0",
        &format!("{cadir}/Old_CA.pem"),
        &format!("{cadir}/abcd1234.0"),
        "/etc/ca-certificates/trust-source/anchors/corp.crt",
    ] {
        s.rm(p);
    }
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let f = for_path(&v, "/etc/ca-certificates/trust-source/anchors/corp.crt");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "critical", "the admin's own: {v:#}");
    assert_eq!(v["summary"]["critical"], 1, "{v:#}");
    for p in [
        "/etc/ssl/certs/Old_CA.pem",
        "/etc/ssl/certs/abcd1234.0",
        &format!("{cadir}/Old_CA.pem"),
        &format!("{cadir}/abcd1234.0"),
    ] {
        let f = for_path(&v, p);
        assert_eq!(f.len(), 1, "{p}: {v:#}");
        assert_eq!(f[0]["severity"], "info", "{p}: {v:#}");
        assert!(f[0]["fix"].is_null(), "{p}: restored, it would be stale");
        assert!(
            f[0]["message"]
                .as_str()
                .unwrap()
                .contains("update-ca-trust"),
            "{p}: {v:#}"
        );
    }

    // the restore plan marks the same four, and the admin's certificate not
    let out = s
        .cmd()
        .args(["--json", "restore", "--vanished", "--dry-run"])
        .output()
        .unwrap();
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = plan["items"].as_array().expect("items");
    let dropped = |p: &str| {
        items
            .iter()
            .find(|i| i["path"] == p)
            .unwrap_or_else(|| panic!("{p}: {plan:#}"))["dropped"]
            .clone()
    };
    assert_eq!(
        dropped("/etc/ca-certificates/trust-source/anchors/corp.crt"),
        Value::Null
    );
    assert_eq!(
        dropped(&format!("{cadir}/Old_CA.pem")),
        serde_json::json!({"by": [], "generated_by": "update-ca-trust"}),
        "{plan:#}"
    );
    for p in ["/etc/ssl/certs/Old_CA.pem", "/etc/ssl/certs/abcd1234.0"] {
        assert_eq!(
            dropped(p)["link_to"],
            format!("{cadir}/Old_CA.pem"),
            "{plan:#}"
        );
    }
}

/// One `useradd` on a lived-in Debian box was ten warnings: the two
/// `accounts/changed`, a `file/modified` each for `/etc/shadow`,
/// `/etc/gshadow`, `/etc/subuid`, `/etc/subgid`, and four more for the
/// backups (`/etc/passwd-` …) the shadow tools rewrite at every change,
/// each with a fix restoring one file alone (`/etc/passwd` without
/// `/etc/shadow` leaves them disagreeing). Now one finding per table,
/// naming the files written with it, whose fix restores them together;
/// the backups are not recorded. Done with the real `useradd --root`; a
/// first user makes the backups exist in the snapshot, as they do on any
/// system that ever had a user added.
#[test]
fn one_useradd_is_one_finding_per_accounts_table() {
    let s = Sys::new();
    s.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
    )
    .write("/etc/group", "root:x:0:\ndaemon:x:1:\nusers:x:100:\n")
    .write(
        "/etc/shadow",
        "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
    )
    .write("/etc/gshadow", "root:*::\ndaemon:*::\nusers:*::\n")
    .write("/etc/subuid", "")
    .write("/etc/subgid", "")
    // a group of its own per user, as Debian's login.defs has it
    .write("/etc/login.defs", "USERGROUPS_ENAB yes\n");
    s.chmod("/etc/shadow", 0o640);
    s.chmod("/etc/gshadow", 0o640);
    let root = s.root().to_str().unwrap().to_string();
    let useradd = |name: &str| {
        run(&["useradd", "--root", &root, "-M", "-s", "/bin/sh", name]);
    };
    useradd("alice");
    assert!(s.path("/etc/passwd-").exists() && s.path("/etc/gshadow-").exists());
    s.snapshot();
    useradd("bob");

    let (code, v) = s.check();
    assert_eq!(code, 1, "{v:#}");
    let all = v["findings"].as_array().unwrap();
    assert!(
        all.iter()
            .all(|f| f["id"] == "accounts/changed" && f["severity"] == "warning"),
        "{v:#}"
    );
    assert_eq!(all.len(), 2, "{v:#}");
    let of = |table: &str| {
        all.iter()
            .find(|f| f["paths"][0] == table)
            .unwrap_or_else(|| panic!("no finding for {table}: {v:#}"))
    };
    let users = of("/etc/passwd");
    assert_eq!(
        users["paths"],
        serde_json::json!(["/etc/passwd", "/etc/shadow", "/etc/subuid"])
    );
    let msg = users["message"].as_str().unwrap();
    assert!(msg.contains("bob added"), "{msg}");
    assert!(
        msg.ends_with("(/etc/shadow and /etc/subuid changed with it)"),
        "{msg}"
    );
    assert_eq!(
        users["fix"],
        "guard diff; guard restore /etc/passwd /etc/shadow /etc/subuid if the change was not intended"
    );
    let groups = of("/etc/group");
    assert_eq!(
        groups["paths"],
        serde_json::json!(["/etc/group", "/etc/gshadow", "/etc/subgid"])
    );
    let (_, text) = s.check_text();
    assert_eq!(
        text.lines().next().unwrap(),
        "2 warnings, nothing critical",
        "{text}"
    );

    // the fix as written undoes the useradd, every table consistent again
    let fix = users["fix"].as_str().unwrap();
    let paths: Vec<&str> = fix
        .trim_start_matches("guard diff; guard restore ")
        .trim_end_matches(" if the change was not intended")
        .split(' ')
        .collect();
    s.cmd()
        .arg("--yes")
        .arg("restore")
        .args(&paths)
        .args(["/etc/group", "/etc/gshadow", "/etc/subgid"])
        .assert()
        .success();
    let (code, v) = s.check();
    assert_eq!(code, 0, "{v:#}");
    let passwd = std::fs::read_to_string(s.path("/etc/passwd")).unwrap();
    assert!(
        passwd.contains("alice") && !passwd.contains("bob"),
        "{passwd}"
    );
}

/// LVM's metadata archive, as lvm writes it: `VG_NNNNN-RANDOM.vg`, 0600 in
/// a 0700 directory, one before each change to the volume group.
fn lvm_archive(s: &Sys, n: u32, seqno: u32) -> String {
    let p = format!(
        "/etc/lvm/archive/vg0_{n:05}-{}.vg",
        1_200_000_000 + n * 7919
    );
    s.write(
        &p,
        &format!(
            "# Generated by LVM2 version 2.03.16(2) (2022-05-18)\n\n\
             contents = \"Text Format Volume Group\"\nversion = 1\n\n\
             description = \"Created *before* executing 'lvcreate -s -L 1G -n nightly vg0/root'\"\n\n\
             vg0 {{\n\tid = \"Jt3Kd2-x\"\n\tseqno = {seqno}\n}}\n"
        ),
    );
    s.chmod(&p, 0o600);
    p
}

/// On a server whose backup script takes a nightly LVM snapshot, lvm
/// archives the volume group's metadata before each `lvcreate`/`lvremove`
/// and prunes the oldest archives past `retain_min`/`retain_days`; it
/// rewrites `/etc/lvm/backup/vg0` after each. Each pruned archive was an
/// admin's own file vanished, critical: a page every night for what lvm
/// does by design. Now info, no fix; an admin's file beside them in
/// /etc/lvm stays critical. (lvm2 is not installed here, and installing it
/// would write the host's /etc: the files are written as lvm names them.)
#[test]
fn lvm_pruning_its_metadata_archive_is_not_an_admins_file_lost() {
    let s = base();
    s.write("/etc/lvm/lvm.conf", "backup {\n\tretain_min = 10\n}\n")
        .write("/etc/lvm/lvmlocal.conf", "local {\n\thost_id = 7\n}\n")
        .write("/etc/lvm/backup/vg0", "vg0 {\n\tseqno = 3\n}\n");
    s.chmod("/etc/lvm/backup/vg0", 0o600);
    let oldest = lvm_archive(&s, 1, 1);
    lvm_archive(&s, 2, 2);
    lvm_archive(&s, 3, 3);
    s.chmod("/etc/lvm/archive", 0o700);
    s.chmod("/etc/lvm/backup", 0o700);
    s.snapshot();

    // tonight's lvcreate: a new archive, the oldest pruned, the backup rewritten
    lvm_archive(&s, 4, 4);
    s.rm(&oldest);
    s.write("/etc/lvm/backup/vg0", "vg0 {\n\tseqno = 4\n}\n");
    let (code, v) = s.check();
    assert_eq!(code, 0, "{v:#}");
    let gone = for_path(&v, &oldest);
    assert_eq!(gone.len(), 1, "{v:#}");
    assert_eq!(gone[0]["id"], "file/vanished");
    assert_eq!(gone[0]["severity"], "info");
    assert!(gone[0]["fix"].is_null(), "{v:#}");
    assert!(
        gone[0]["message"]
            .as_str()
            .unwrap()
            .contains("prunes the old ones itself"),
        "{v:#}"
    );
    let backup = for_path(&v, "/etc/lvm/backup/vg0");
    assert_eq!(backup.len(), 1, "{v:#}");
    assert_eq!(
        (&backup[0]["id"], &backup[0]["severity"]),
        (&"file/modified".into(), &"info".into())
    );

    // the admin's own file in /etc/lvm is still theirs
    s.rm("/etc/lvm/lvmlocal.conf");
    let (code, v) = s.check();
    assert_eq!(code, 2, "{v:#}");
    let local = for_path(&v, "/etc/lvm/lvmlocal.conf");
    assert_eq!(local[0]["severity"], "critical", "{v:#}");

    // the whole archive gone (lvm2 purged, or rm -r by hand) with the
    // admin's file back: a directory, not an admin's file lost
    s.write("/etc/lvm/lvmlocal.conf", "local {\n\thost_id = 7\n}\n");
    s.rm("/etc/lvm/archive");
    let (code, v) = s.check();
    assert_ne!(code, 2, "{v:#}");
}
