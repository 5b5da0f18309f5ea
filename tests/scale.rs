//! guard at the sizes real servers reach: large files in an include, many
//! findings. What is asserted is behaviour that stays bounded (what is
//! read, what is stored, what is printed); the timings behind these fixes
//! are in the commit messages and the README's "Performance".

mod common;
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
