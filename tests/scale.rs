//! guard at the sizes real servers reach: large files in an include, many
//! findings. What is asserted is behaviour that stays bounded (what is
//! read, what is stored, what is printed); the timings behind these fixes
//! are in the commit messages and the README's "Performance".

mod common;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

/// `guard diff` of a file larger than a finding's diff limit says the
/// content changed and how big it is, as `check` does, instead of reading
/// both sides whole to diff them (a modified 1 GB file took 2.1 GB).
#[test]
fn diff_of_a_large_file_says_it_changed_without_diffing_it() {
    let s = Sys::new();
    let line = "key = value, long enough to make a large file quickly\n";
    let big = line.repeat(300 * 1024 / line.len());
    s.write("/etc/big.conf", &big)
        .write("/etc/small.conf", "a = 1\n");
    s.snapshot();
    s.write("/etc/big.conf", &format!("{big}added = 1\n"))
        .write("/etc/small.conf", "a = 2\n");
    let out = s.cmd().arg("diff").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let (n, m) = (big.len(), big.len() + "added = 1\n".len());
    assert!(
        text.contains(&format!("content changed ({n} -> {m} bytes)")),
        "{text}"
    );
    assert!(!text.contains("+added = 1"), "{text}");
    // a small file is still diffed
    assert!(text.contains("+a = 2"), "{text}");
}

/// `guard verify` of a store with many snapshots holds one manifest at a
/// time: it used to read them all first (1.8 GB for 1,000 snapshots of a
/// 2,500-entry /etc). Here 60 snapshots of 5,000 entries (~4 MB each once
/// parsed, ~250 MB together) are verified with the data segment limited to
/// 96 MB (`ulimit -d`, which counts the allocator's mappings).
#[test]
fn verify_of_many_snapshots_reads_one_manifest_at_a_time() {
    let s = Sys::new();
    for d in 0..50 {
        for f in 0..100 {
            s.write(
                &format!("/etc/maps/d{d:02}/map{f:03}"),
                &format!("{d} {f}\n"),
            );
        }
    }
    s.snapshot();
    for i in 0..59 {
        s.write("/etc/maps/counter", &format!("{i}\n"));
        s.cmd()
            .args(["snapshot", "--kind", "timer"])
            .assert()
            .success();
    }
    let guard = assert_cmd::cargo::cargo_bin("guard");
    let out = assert_cmd::Command::new("sh")
        .args(["-c", "ulimit -d 98304 && exec \"$@\"", "sh"])
        .arg(guard)
        .arg("--root")
        .arg(s.root())
        .arg("--store")
        .arg(s.store.path())
        .args(["--no-progress", "verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("60 snapshots"),
        "{out:?}\n{text}"
    );
}

/// A sparse file (a disk image, a database) in an include keeps its holes
/// in the store and when restored: a 1 GiB file with 1 MiB of data is
/// snapshotted into, and restored onto, tmpfs filesystems of 64 MiB, which
/// the dense copies guard used to write could not hold (a 3 GB image took
/// 3 GB of the store and 18 s).
#[test]
fn a_sparse_file_is_stored_and_restored_with_its_holes() {
    let s = Sys::new();
    s.write(
        "/etc/guard/guard.toml",
        "version = 1\ninclude = [\"/srv/img\"]\n",
    )
    .write("/etc/motd", "hello\n");
    let img = s.path("/srv/img");
    mount_tmpfs(&img, "64m");
    let _ui = Unmount(img.clone());
    mount_tmpfs(s.store.path(), "64m");
    let _us = Unmount(s.store.path().to_path_buf());
    let file = img.join("guest.raw");
    let mut f = fs::File::create(&file).unwrap();
    f.seek(SeekFrom::Start(300 << 20)).unwrap();
    f.write_all(&vec![0x5a; 1 << 20]).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    s.snapshot();
    let used = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
    let objects: u64 = walkdir::WalkDir::new(s.store.path().join("objects"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| used(e.path()))
        .sum();
    assert!(objects < 8 << 20, "the store holds {objects} bytes");
    fs::remove_file(&file).unwrap();
    s.cmd()
        .args(["--yes", "restore", "/srv/img/guest.raw"])
        .assert()
        .success();
    assert_eq!(fs::metadata(&file).unwrap().len(), 1 << 30);
    assert!(used(&file) < 8 << 20, "restored with {} bytes", used(&file));
    // and it reads back as it was
    let (code, v) = s.check();
    assert_eq!(code, 0, "{v:#}");
    s.cmd().arg("verify").assert().success();
}
