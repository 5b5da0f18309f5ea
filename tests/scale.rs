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
