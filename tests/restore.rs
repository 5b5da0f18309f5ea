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
