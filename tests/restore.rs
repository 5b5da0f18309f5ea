//! `guard restore PATH…` end to end on a temporary root: what a path-wise
//! restore must notice as changed (a repointed symlink, a device node that
//! names another device, a directory's xattrs and ACLs) and put back exactly.

mod common;
#[path = "common/pkg_helpers.rs"]
mod pkg;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::{run, Sys};

/// `guard restore --yes ARGS…`: (exit code, stdout + stderr).
fn restore(sys: &Sys, args: &[&str]) -> (i32, String) {
    let out = sys
        .cmd()
        .arg("restore")
        .arg("--yes")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

fn link(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_repointed_symlink_is_restored_not_skipped() {
    let sys = Sys::new();
    sys.symlink("../usr/share/zoneinfo/UTC", "/etc/localtime");
    sys.symlink("/usr/bin/vim.basic", "/etc/alternatives/editor");
    sys.symlink("/usr/bin/less", "/etc/alternatives/pager");
    sys.snapshot();
    // an upgrade (or a hand) repoints them; kind, mode and owner stay
    sys.rm("/etc/localtime");
    sys.symlink("../usr/share/zoneinfo/Europe/Paris", "/etc/localtime");
    sys.rm("/etc/alternatives/editor");
    sys.symlink("/usr/bin/nano", "/etc/alternatives/editor");

    let (code, out) = restore(&sys, &["/etc/localtime"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("already as in the snapshot"), "{out}");
    assert_eq!(
        link(&sys.path("/etc/localtime")),
        "../usr/share/zoneinfo/UTC"
    );

    // under a directory restore, only the repointed link is rewritten
    let (code, out) = restore(&sys, &["/etc/alternatives"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("symlink     /etc/alternatives/editor -> /usr/bin/vim.basic"),
        "{out}"
    );
    assert!(
        out.contains("/etc/alternatives/pager: already as in the snapshot"),
        "{out}"
    );
    assert_eq!(
        link(&sys.path("/etc/alternatives/editor")),
        "/usr/bin/vim.basic"
    );
    assert_eq!(link(&sys.path("/etc/alternatives/pager")), "/usr/bin/less");
    // no temp name is left beside them
    let names: Vec<_> = std::fs::read_dir(sys.path("/etc/alternatives"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_device_node_that_names_another_device_is_restored() {
    let sys = Sys::new();
    let console = sys.path("/etc/console");
    run(&[
        "mknod",
        "-m",
        "0620",
        console.to_str().unwrap(),
        "c",
        "5",
        "1",
    ]);
    sys.snapshot();
    std::fs::remove_file(&console).unwrap();
    run(&[
        "mknod",
        "-m",
        "0620",
        console.to_str().unwrap(),
        "c",
        "1",
        "3",
    ]);

    let (code, out) = restore(&sys, &["/etc/console"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("already as in the snapshot"), "{out}");
    let md = std::fs::symlink_metadata(&console).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(5, 1));
    assert_eq!(md.mode() & 0o7777, 0o620);
}

#[test]
fn a_directory_whose_xattrs_or_default_acl_changed_is_restored() {
    let sys = Sys::new();
    sys.write("/etc/d/app.conf", "x = 1\n");
    let d = sys.path("/etc/d");
    let ds = d.to_str().unwrap();
    run(&["setfattr", "-n", "user.tag", "-v", "keep", ds]);
    // new files in /etc/d inherit read access for uid 65534
    run(&["setfacl", "-d", "-m", "u:65534:r", ds]);
    let before = pkg::xattrs(&d);
    assert!(before.iter().any(|(n, _)| n == "system.posix_acl_default"));
    sys.snapshot();

    // only the directory's xattrs change: mode, owner, content stay
    run(&["setfattr", "-x", "user.tag", ds]);
    let (code, out) = restore(&sys, &["/etc/d"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("fix dir     /etc/d"), "{out}");
    assert!(
        out.contains("/etc/d/app.conf: already as in the snapshot"),
        "{out}"
    );
    assert_eq!(pkg::xattrs(&d), before);

    // the default ACL alone removed, and an xattr that was never there added
    run(&["setfacl", "-k", ds]);
    run(&["setfattr", "-n", "user.stray", "-v", "1", ds]);
    let (code, out) = restore(&sys, &["/etc/d"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(pkg::xattrs(&d), before);
}

#[test]
fn files_and_symlinks_with_names_near_name_max_are_restored() {
    let sys = Sys::new();
    // 240 bytes: legal (NAME_MAX is 255) but too long to carry whole in a
    // temp name with a prefix and suffix
    let file = format!("/etc/long/{}.conf", "f".repeat(235));
    let lnk = format!("/etc/long/{}.link", "l".repeat(235));
    assert_eq!(Path::new(&file).file_name().unwrap().len(), 240);
    sys.write(&file, "keep = yes\n");
    sys.symlink("../usr/share/zoneinfo/UTC", &lnk);
    sys.snapshot();
    sys.write(&file, "keep = no\n");
    sys.rm(&lnk);
    sys.symlink("../usr/share/zoneinfo/Europe/Paris", &lnk);

    let (code, out) = restore(&sys, &["/etc/long"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read(sys.path(&file)).unwrap(), b"keep = yes\n");
    assert_eq!(link(&sys.path(&lnk)), "../usr/share/zoneinfo/UTC");
    assert_eq!(std::fs::read_dir(sys.path("/etc/long")).unwrap().count(), 2);
}

#[test]
fn a_vanished_fifo_comes_back_with_its_mode_and_mtime() {
    let sys = Sys::new();
    let fifo = sys.path("/etc/initctl");
    run(&["mkfifo", "-m", "0600", fifo.to_str().unwrap()]);
    pkg::set_mtime(&fifo, 1_600_000_000, 123_456_789);
    sys.snapshot();
    sys.rm("/etc/initctl");

    let (code, out) = restore(&sys, &["--vanished"]);
    assert_eq!(code, 0, "{out}");
    let md = std::fs::symlink_metadata(&fifo).unwrap();
    assert!(md.file_type().is_fifo());
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123_456_789));
}

/// `getfattr`-style read of one xattr of the node itself (not followed).
fn xattr_of(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut v = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, name, &mut v) {
        Ok(n) => Some(v[..n].to_vec()),
        Err(rustix::io::Errno::NODATA) => None,
        Err(e) => panic!("lgetxattr {}: {e}", p.display()),
    }
}

/// Links (one out of the root, one to a file inside it), a fifo and a
/// device node, each with a `trusted.*` and a `security.*` xattr, and a
/// snapshot of them. `user.*` is refused on these kinds (EPERM); trusted.*
/// and security.* are what labels and tools put there, and root may set
/// them.
struct Nodes {
    sys: Sys,
    _outside: tempfile::TempDir,
    host: std::path::PathBuf,
}

const NODES: [&str; 4] = [
    "/etc/out-link",
    "/etc/in-link",
    "/etc/initctl",
    "/etc/console",
];

impl Nodes {
    fn new() -> Nodes {
        let sys = Sys::new();
        // A file outside the root that an absolute link points at: restore
        // must never follow the link out to it.
        let outside = tempfile::tempdir().unwrap();
        let host = outside.path().join("host.conf");
        std::fs::write(&host, "outside\n").unwrap();
        sys.symlink(host.to_str().unwrap(), "/etc/out-link");
        sys.write("/etc/in.conf", "inside\n");
        sys.symlink("in.conf", "/etc/in-link");
        let fifo = sys.path("/etc/initctl");
        run(&["mkfifo", "-m", "0600", fifo.to_str().unwrap()]);
        let console = sys.path("/etc/console");
        run(&[
            "mknod",
            "-m",
            "0620",
            console.to_str().unwrap(),
            "c",
            "5",
            "1",
        ]);
        for n in NODES {
            let p = sys.path(n);
            let p = p.to_str().unwrap();
            run(&["setfattr", "-h", "-n", "trusted.guard", "-v", "keep", p]);
            run(&["setfattr", "-h", "-n", "security.guard", "-v", "label", p]);
        }
        sys.snapshot();
        Nodes {
            sys,
            _outside: outside,
            host,
        }
    }

    /// Every node carries its recorded xattrs, and what the links point at
    /// got none of them.
    fn assert_restored(&self) {
        for n in NODES {
            let p = self.sys.path(n);
            assert_eq!(
                xattr_of(&p, "trusted.guard").as_deref(),
                Some(&b"keep"[..]),
                "{n}"
            );
            assert_eq!(
                xattr_of(&p, "security.guard").as_deref(),
                Some(&b"label"[..]),
                "{n}"
            );
        }
        for p in [self.host.clone(), self.sys.path("/etc/in.conf")] {
            assert_eq!(xattr_of(&p, "trusted.guard"), None, "{}", p.display());
            assert_eq!(xattr_of(&p, "security.guard"), None, "{}", p.display());
        }
        let kind = |n: &str| {
            std::fs::symlink_metadata(self.sys.path(n))
                .unwrap()
                .file_type()
        };
        assert!(kind("/etc/initctl").is_fifo());
        assert!(kind("/etc/console").is_char_device());
        assert_eq!(
            link(&self.sys.path("/etc/out-link")),
            self.host.to_str().unwrap()
        );
        assert_eq!(link(&self.sys.path("/etc/in-link")), "in.conf");
    }
}

#[test]
fn vanished_symlinks_and_special_nodes_come_back_with_their_xattrs() {
    let t = Nodes::new();
    for n in NODES {
        t.sys.rm(n);
    }
    let (code, out) = restore(&t.sys, &["--vanished"]);
    assert_eq!(code, 0, "{out}");
    t.assert_restored();
}

#[test]
fn symlinks_and_special_nodes_whose_xattrs_alone_changed_are_restored() {
    let t = Nodes::new();
    // kind, target, mode and owner stay; one xattr goes, one changes
    for n in NODES {
        let p = t.sys.path(n);
        let p = p.to_str().unwrap();
        run(&["setfattr", "-h", "-x", "trusted.guard", p]);
        run(&["setfattr", "-h", "-n", "security.guard", "-v", "other", p]);
    }
    let (code, out) = restore(&t.sys, &NODES);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("already as in the snapshot"), "{out}");
    t.assert_restored();

    // and once restored, they are seen as such
    let (code, out) = restore(&t.sys, &NODES);
    assert_eq!(code, 0, "{out}");
    for n in NODES {
        assert!(
            out.contains(&format!("{n}: already as in the snapshot")),
            "{out}"
        );
    }
}

/// Rewrites text inside the one snapshot's manifest and seals it again (the
/// header's blake3 covers the manifest's exact bytes): a snapshot that
/// records what this machine's kernel would never have let it read.
fn edit_manifest(sys: &Sys, from: &str, to: &str) {
    let dir = sys.store.path().join("snapshots");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    let at = text.find(",\"manifest\":").unwrap() + ",\"manifest\":".len();
    let (head, old) = text.split_at(at);
    let old = old.strip_suffix('}').unwrap();
    let manifest = old.replace(from, to);
    let old = blake3::hash(old.as_bytes()).to_hex().to_string();
    let new = blake3::hash(manifest.as_bytes()).to_hex().to_string();
    assert!(head.contains(&old));
    std::fs::write(&file, format!("{}{manifest}}}", head.replace(&old, &new))).unwrap();
}

#[test]
fn an_xattr_the_kernel_refuses_is_reported_and_the_other_paths_are_restored() {
    let sys = Sys::new();
    sys.symlink("in.conf", "/etc/a-link");
    let fifo = sys.path("/etc/initctl");
    run(&["mkfifo", "-m", "0600", fifo.to_str().unwrap()]);
    let (l, f) = (sys.path("/etc/a-link"), fifo.clone());
    run(&[
        "setfattr",
        "-h",
        "-n",
        "trusted.guard",
        "-v",
        "keep",
        l.to_str().unwrap(),
    ]);
    run(&[
        "setfattr",
        "-h",
        "-n",
        "trusted.other",
        "-v",
        "keep",
        l.to_str().unwrap(),
    ]);
    run(&[
        "setfattr",
        "-h",
        "-n",
        "trusted.fifo",
        "-v",
        "keep",
        f.to_str().unwrap(),
    ]);
    sys.snapshot();
    // user.* on a symlink: Linux refuses it (EPERM)
    edit_manifest(&sys, "\"trusted.guard\"", "\"user.guard\"");
    sys.rm("/etc/a-link");
    sys.rm("/etc/initctl");

    let out = sys
        .cmd()
        .args(["restore", "--yes", "--json", "--vanished"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{v}\n{stderr}");
    assert!(
        stderr.contains("1 item restored without everything"),
        "{stderr}"
    );
    assert_eq!(
        v["restored"],
        serde_json::json!(["/etc/a-link", "/etc/initctl"]),
        "{v}"
    );
    assert_eq!(v["failed"], serde_json::Value::Null, "{v}");
    let inc = v["incomplete"].as_array().unwrap();
    assert_eq!(inc.len(), 1, "{v}");
    assert_eq!(inc[0]["path"], "/etc/a-link");
    let err = inc[0]["error"].as_str().unwrap();
    assert!(
        err.contains("xattr user.guard refused: Operation not permitted"),
        "{err}"
    );
    // what the kernel took is there, on the link itself; the fifo after it
    // was restored whole
    assert_eq!(xattr_of(&l, "trusted.other").as_deref(), Some(&b"keep"[..]));
    assert_eq!(xattr_of(&f, "trusted.fifo").as_deref(), Some(&b"keep"[..]));
    assert_eq!(link(&l), "in.conf");

    // the text report names it on the path's own line
    sys.rm("/etc/a-link");
    let (code, out) = restore(&sys, &["--vanished"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("restored /etc/a-link, but not all of it: xattr user.guard refused"),
        "{out}"
    );
}

#[test]
fn paths_whose_mtime_alone_changed_get_it_back_without_a_rewrite() {
    let sys = Sys::new();
    sys.write("/etc/aliases", "root: admin\n");
    sys.write("/etc/d/app.conf", "x = 1\n");
    sys.symlink("d/app.conf", "/etc/app.link");
    let fifo = sys.path("/etc/initctl");
    run(&["mkfifo", "-m", "0600", fifo.to_str().unwrap()]);
    let paths = ["/etc/aliases", "/etc/app.link", "/etc/initctl", "/etc/d"];
    let mtime = |p: &str| {
        let md = std::fs::symlink_metadata(sys.path(p)).unwrap();
        (md.mtime(), md.mtime_nsec())
    };
    for p in paths {
        pkg::set_mtime(&sys.path(p), 1_600_000_000, 123_456_789);
    }
    sys.snapshot();
    let ino = std::fs::metadata(sys.path("/etc/aliases")).unwrap().ino();
    let inside = mtime("/etc/d/app.conf");
    // a touch: content, mode, owner and xattrs stay (and postfix would
    // now take aliases for newer than aliases.db)
    for p in paths {
        pkg::set_mtime(&sys.path(p), 1_700_000_000, 0);
    }
    // `guard check` reports no mtime alone: it moves with harmless touches
    let (_, v) = sys.check();
    for p in paths {
        assert!(common::for_path(&v, p).is_empty(), "{p}: {v}");
    }

    let (code, out) = restore(&sys, &paths);
    assert_eq!(code, 0, "{out}");
    for p in paths {
        assert!(!out.contains(&format!("{p}: already")), "{out}");
        assert!(
            out.contains(&format!(
                "set mtime   {p} to 2020-09-13T12:26:40.123456789Z (nothing else differs)"
            )),
            "{out}"
        );
        assert!(out.contains(&format!("mtime restored {p}\n")), "{out}");
        assert_eq!(mtime(p), (1_600_000_000, 123_456_789), "{p}");
    }
    // put back in place, not rewritten; the link's own mtime set, not
    // its target's, and nothing in the directory written
    assert_eq!(
        std::fs::metadata(sys.path("/etc/aliases")).unwrap().ino(),
        ino
    );
    assert_eq!(mtime("/etc/d/app.conf"), inside);
    assert!(
        out.contains("/etc/d/app.conf: already as in the snapshot"),
        "{out}"
    );

    let (code, out) = restore(&sys, &paths);
    assert_eq!(code, 0, "{out}");
    for p in paths {
        assert!(
            out.contains(&format!("{p}: already as in the snapshot")),
            "{out}"
        );
    }
}

/// A usr-merge (`/lib` becomes a link to `usr/lib`) moves the snapshot's
/// `/lib/systemd/system/…` to `/usr/lib/systemd/system/…`. A restore must
/// look for them there: planning to recreate `/lib/systemd/system` would be
/// noise at best (guard refuses to write through the `/lib` link), and what
/// really vanished must come back where the system now reads it.
#[test]
fn after_a_usr_merge_restore_works_where_the_files_moved() {
    let sys = Sys::new();
    let unit = "[Service]\nExecStart=/usr/sbin/cron -f\n";
    sys.write("/lib/systemd/system/cron.service", unit);
    sys.write(
        "/lib/systemd/system/ssh.service",
        "[Service]\nExecStart=/usr/sbin/sshd -D\n",
    );
    sys.snapshot();
    // the merge: everything moves under /usr/lib, /lib becomes a link
    std::fs::create_dir_all(sys.path("/usr/lib/systemd/system")).unwrap();
    for u in ["cron.service", "ssh.service"] {
        std::fs::rename(
            sys.path(&format!("/lib/systemd/system/{u}")),
            sys.path(&format!("/usr/lib/systemd/system/{u}")),
        )
        .unwrap();
    }
    std::fs::remove_dir_all(sys.path("/lib")).unwrap();
    sys.symlink("usr/lib", "/lib");

    // the move alone: nothing to restore
    let (code, out) = restore(&sys, &["--vanished", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(0 items)"), "{out}");

    // a unit the upgrade then lost comes back under /usr/lib, /lib stays a link
    sys.rm("/usr/lib/systemd/system/cron.service");
    let (code, out) = restore(&sys, &["--vanished"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(sys.path("/usr/lib/systemd/system/cron.service")).unwrap(),
        unit
    );
    assert_eq!(link(&sys.path("/lib")), "usr/lib");

    // and a path named the old way is found where it moved
    sys.rm("/usr/lib/systemd/system/ssh.service");
    let (code, out) = restore(&sys, &["/lib/systemd/system/ssh.service"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        sys.path("/usr/lib/systemd/system/ssh.service").exists(),
        "{out}"
    );
    assert_eq!(link(&sys.path("/lib")), "usr/lib");
}

/// DESIGN §1: restore puts back the PAM service files first, and a path it
/// refuses (an upgrade left a symlink to a host directory where the
/// admin's directory was) stops nothing else: before, a refusal of
/// /etc/app/app.conf, listed before /etc/pam.d, ended the restore there and
/// left the mail logins failing.
#[test]
fn pam_files_come_first_and_a_refused_path_stops_nothing_else() {
    let sys = Sys::new();
    sys.write("/etc/app/app.conf", "listen = 993\n");
    sys.write("/etc/pam.d/imap", "auth required pam_sss.so\n");
    sys.write("/etc/zz.conf", "last\n");
    sys.snapshot();
    let outside = tempfile::tempdir().unwrap();
    sys.rm("/etc/app");
    sys.symlink(outside.path().to_str().unwrap(), "/etc/app");
    sys.rm("/etc/pam.d");
    sys.rm("/etc/zz.conf");

    // the plan: the PAM directory and its file first, then the rest in
    // path order
    let out = sys
        .cmd()
        .args(["restore", "--vanished", "--dry-run"])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    let items: Vec<&str> = plan
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().find(|w| w.starts_with('/')).unwrap())
        .collect();
    assert_eq!(
        items,
        [
            "/etc/pam.d",
            "/etc/pam.d/imap",
            "/etc/app/app.conf",
            "/etc/zz.conf"
        ],
        "{plan}"
    );

    let out = sys
        .cmd()
        .args(["--json", "restore", "--vanished", "--yes"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{doc:#}");
    assert_eq!(doc["refused"][0]["path"], "/etc/app/app.conf", "{doc:#}");
    assert!(
        doc["refused"][0]["error"]
            .as_str()
            .unwrap()
            .contains("/etc/app is a symlink"),
        "{doc:#}"
    );
    assert!(doc["failed"].is_null(), "{doc:#}");
    assert_eq!(
        doc["restored"],
        serde_json::json!(["/etc/pam.d", "/etc/pam.d/imap", "/etc/zz.conf"])
    );
    assert!(doc["error"]
        .as_str()
        .unwrap()
        .contains("1 item not restored"));
    assert_eq!(
        std::fs::read_to_string(sys.path("/etc/pam.d/imap")).unwrap(),
        "auth required pam_sss.so\n"
    );
    assert_eq!(
        std::fs::read_to_string(sys.path("/etc/zz.conf")).unwrap(),
        "last\n"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    // in text: what was and was not restored, on stdout, and exit 3
    let (code, text) = restore(&sys, &["/etc/app"]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("not restored /etc/app: refusing to restore the directory /etc/app: a symlink is there now"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_file_where_a_directory_was_refuses_the_paths_beneath_it_alone() {
    // An upgrade put a file where the admin's directory was: each path
    // beneath it is `not restored`, naming the file, and the rest of the
    // plan is applied (before: the first of them stopped the restore).
    let sys = Sys::new();
    sys.write("/etc/app/a.conf", "a\n")
        .write("/etc/app/b.conf", "b\n")
        .write("/etc/zz.conf", "z\n");
    sys.snapshot();
    sys.rm("/etc/app");
    sys.write("/etc/app", "the upgrade's file\n");
    sys.rm("/etc/zz.conf");
    let (code, out) = restore(&sys, &["--vanished"]);
    assert_eq!(code, 3, "{out}");
    for f in ["a", "b"] {
        assert!(
            out.contains(&format!(
                "not restored /etc/app/{f}.conf: refusing to write /etc/app/{f}.conf: \
                 /etc/app is a file now, where the snapshot has a directory"
            )),
            "{out}"
        );
    }
    assert!(out.contains("restored /etc/zz.conf\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(sys.path("/etc/zz.conf")).unwrap(),
        "z\n"
    );
    assert_eq!(
        std::fs::read_to_string(sys.path("/etc/app")).unwrap(),
        "the upgrade's file\n"
    );
}

#[test]
fn an_owner_gone_from_passwd_is_said_and_its_uid_never_given_to_another_user() {
    let sys = Sys::new();
    sys.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\npostfix:x:105:110::/:/bin/false\nsasl:x:106:111::/:/bin/false\n",
    )
    .write("/etc/group", "root:x:0:\npostfix:x:110:\nsasl:x:111:\n")
    .write("/etc/postfix/sasl_passwd", "smtp secret\n")
    .write("/etc/postfix/key", "key\n");
    let chown = |p: &str, ids: &str| run(&["chown", ids, sys.path(p).to_str().unwrap()]);
    chown("/etc/postfix/sasl_passwd", "105:110");
    chown("/etc/postfix/key", "106:111");
    sys.chmod("/etc/postfix/sasl_passwd", 0o640);
    sys.chmod("/etc/postfix/key", 0o640);
    sys.snapshot();
    sys.rm("/etc/postfix/sasl_passwd");
    sys.rm("/etc/postfix/key");
    // postfix and sasl removed; uid 106 went to a new user since
    sys.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\nresolve:x:106:999::/:/bin/false\n",
    )
    .write("/etc/group", "root:x:0:\nsasl:x:111:\n");

    let (code, out) = restore(&sys, &["/etc/postfix"]);
    assert_eq!(code, 3, "{out}");
    // in the plan, before the question, and on the result line
    let kept = "user postfix no longer exists: uid 105 kept, which no user has now; \
                group postfix no longer exists: gid 110 kept, which no group has now";
    let rooted = "user sasl no longer exists and uid 106 is now resolve's: given to root instead";
    assert!(
        out.contains(&format!("0640 postfix:postfix) ({kept})")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "restored /etc/postfix/sasl_passwd, but not all of it: {kept}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "restored /etc/postfix/key, but not all of it: {rooted}"
        )),
        "{out}"
    );
    let md = |p: &str| std::fs::metadata(sys.path(p)).unwrap();
    assert_eq!(
        (
            md("/etc/postfix/sasl_passwd").uid(),
            md("/etc/postfix/sasl_passwd").gid()
        ),
        (105, 110)
    );
    // root, not resolve; the group sasl is still there, by name
    assert_eq!(
        (md("/etc/postfix/key").uid(), md("/etc/postfix/key").gid()),
        (0, 111)
    );
}
