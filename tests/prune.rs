//! `forget`, `prune` and `verify` driven through the binary: what goes, what
//! must stay (remaining snapshots of either format version, the baseline,
//! what an unfinished playbook walk needs), plan → show → confirm → apply,
//! and `verify`'s exit codes. Every test works on a temporary root and store.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

const GUARD: &str = env!("CARGO_BIN_EXE_guard");

struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let store = dir.path().join("store");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        Sandbox {
            _dir: dir,
            root,
            store,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        run_on(&self.root, &self.store, args)
    }

    /// A snapshot of `kind` with its own content in /etc/changing.
    fn snapshot(&self, kind: &str) -> String {
        let n = self.ids().len();
        fs::write(self.root.join("etc/changing"), format!("state {n}\n")).unwrap();
        let o = self.run(&["snapshot", "--kind", kind]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.store.join("snapshots"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".json").map(str::to_string)
                    })
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    fn objects(&self) -> usize {
        walkdir::WalkDir::new(self.store.join("objects"))
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .count()
    }
}

fn run_on(root: &Path, store: &Path, args: &[&str]) -> Output {
    #[allow(clippy::disallowed_methods)] // tests drive the binary directly
    std::process::Command::new(GUARD)
        .arg("--root")
        .arg(root)
        .arg("--store")
        .arg(store)
        .arg("--no-progress")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON document on stdout: {e}\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

#[test]
fn forget_of_the_same_snapshot_twice_removes_it_and_its_objects() {
    let sb = Sandbox::new();
    let a = sb.snapshot("timer");
    let b = sb.snapshot("timer");
    let before = sb.objects();
    let o = sb.run(&["--yes", "forget", &a, &a]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sb.ids(), vec![b]);
    assert_eq!(sb.objects(), before - 1, "a's own object went");
    assert_eq!(code(&sb.run(&["verify"])), 0);
}

#[test]
fn a_corrupt_manifest_stops_forget_and_prune_before_anything_goes() {
    let sb = Sandbox::new();
    let a = sb.snapshot("timer");
    let b = sb.snapshot("timer");
    let c = sb.snapshot("timer");
    // a flipped byte inside c's manifest: its header still reads
    let path = sb.store.join("snapshots").join(format!("{c}.json"));
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("/etc/changing", "/etc/chanGing")).unwrap();
    let before = sb.objects();
    for args in [
        &["--yes", "forget", a.as_str()][..],
        &["--yes", "prune", "--keep", "1"],
        &["prune", "--keep", "1", "--dry-run"],
    ] {
        let o = sb.run(args);
        assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("cannot decide which objects are still needed")
                && stderr(&o).contains("nothing removed"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(sb.ids(), vec![a.clone(), b.clone(), c.clone()], "{args:?}");
        assert_eq!(sb.objects(), before, "{args:?}");
    }
    // the way out the message names: forget the corrupt one
    let o = sb.run(&["--yes", "forget", &c]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(code(&sb.run(&["verify"])), 0);
}

#[test]
fn prune_keeps_the_newest_of_each_kind_every_manual_and_the_baseline() {
    let sb = Sandbox::new();
    let m = sb.snapshot("manual");
    let pre: Vec<String> = (0..3).map(|_| sb.snapshot("pre")).collect();
    let post: Vec<String> = (0..3).map(|_| sb.snapshot("post")).collect();
    let timer: Vec<String> = (0..3).map(|_| sb.snapshot("timer")).collect();
    let o = sb.run(&["--json", "--yes", "prune", "--keep", "2"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        json(&o)["snapshots"],
        serde_json::json!([pre[0], post[0], timer[0]])
    );
    let mut kept = vec![m.clone()];
    kept.extend([&pre[1..], &post[1..], &timer[1..]].concat());
    kept.sort();
    assert_eq!(sb.ids(), kept);
    assert_eq!(code(&sb.run(&["verify"])), 0);
    // --keep 0 still keeps the baseline `check` compares against
    let o = sb.run(&["--yes", "prune", "--keep", "0"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sb.ids(), vec![m, pre[2].clone()]);
    let o = sb.run(&["--json", "check"]);
    assert_eq!(json(&o)["snapshot"], pre[2].as_str());
}

#[test]
fn prune_keeps_what_an_unfinished_playbook_walk_will_restore_from() {
    let sb = Sandbox::new();
    let walks = sb.snapshot("pre");
    let newer: Vec<String> = (0..3).map(|_| sb.snapshot("pre")).collect();
    let journal = |finished: serde_json::Value| {
        serde_json::json!({
            "version": 1, "playbook": "leap-upgrade",
            "started": "2026-11-22T22:00:00Z", "finished": finished,
            "facts": {}, "answers": {"snapshot_id": walks, "target_release": "15.6"},
            "steps": [{"id": "snapshot", "status": "done", "started": "2026-11-22T22:00:00Z",
                       "ended": "2026-11-22T22:00:01Z", "note": null, "commands": []}]
        })
    };
    let jdir = sb.store.join("journals");
    fs::create_dir_all(&jdir).unwrap();
    fs::write(
        jdir.join("leap-upgrade.json"),
        serde_json::to_vec(&journal(serde_json::Value::Null)).unwrap(),
    )
    .unwrap();
    let o = sb.run(&["--yes", "prune", "--keep", "1"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sb.ids(), vec![walks.clone(), newer[2].clone()]);
    // a journal that cannot be read is not "needs nothing"
    fs::write(jdir.join("other.json"), b"{\"finished\": nul").unwrap();
    let o = sb.run(&["--yes", "prune", "--keep", "0"]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("journals/other.json"), "{}", stderr(&o));
    fs::remove_file(jdir.join("other.json")).unwrap();
    // once the walk has finished, its snapshot is an ordinary `pre`
    fs::write(
        jdir.join("leap-upgrade.json"),
        serde_json::to_vec(&journal("2026-11-23T01:00:00Z".into())).unwrap(),
    )
    .unwrap();
    let o = sb.run(&["--yes", "prune", "--keep", "1"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sb.ids(), vec![newer[2].clone()]);
}

#[test]
fn the_dry_run_shows_what_would_go_and_removes_nothing() {
    let sb = Sandbox::new();
    let a = sb.snapshot("timer");
    sb.snapshot("timer");
    let before = (sb.ids(), sb.objects());
    let o = sb.run(&["--json", "prune", "--keep", "1", "--dry-run"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["snapshots"], serde_json::json!([a]));
    assert_eq!(v["objects"], 1, "{v}");
    assert_eq!(v["bytes"], "state 0\n".len(), "{v}");
    assert_eq!(v["dry_run"], true);
    let o = sb.run(&["forget", &a, "--dry-run"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("would remove 1 snapshot, 1 object, 8 bytes"),
        "{out}"
    );
    assert_eq!((sb.ids(), sb.objects()), before);
    // without a terminal and without --yes: refused, nothing removed
    for args in [&["forget", a.as_str()][..], &["prune", "--keep", "1"]] {
        let o = sb.run(args);
        assert_eq!(code(&o), 3, "{args:?}");
        assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
        assert_eq!((sb.ids(), sb.objects()), before);
        let mut j = vec!["--json"];
        j.extend_from_slice(args);
        let o = sb.run(&j);
        assert!(json(&o)["error"].is_string());
    }
}

/// A `forget` killed after its snapshot files went leaves their objects;
/// so does a `snapshot` killed before its commit. No snapshot names them,
/// and the next `prune` removes them even with no snapshot to drop.
#[test]
fn prune_collects_objects_no_snapshot_needs_with_nothing_else_to_do() {
    let sb = Sandbox::new();
    let id = sb.snapshot("manual");
    let before = sb.objects();
    let stray = blake3::hash(b"left by a killed forget")
        .to_hex()
        .to_string();
    let dir = sb.store.join("objects").join(&stray[..2]);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&stray[2..]), b"left by a killed forget").unwrap();
    let o = sb.run(&["--json", "prune", "--dry-run"]);
    assert_eq!(json(&o)["objects"], 1);
    let o = sb.run(&["--yes", "prune"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(sb.objects(), before);
    assert_eq!(sb.ids(), vec![id]);
    let o = sb.run(&["--json", "prune"]);
    assert_eq!(
        json(&o),
        serde_json::json!({"snapshots": [], "objects": 0, "bytes": 0,
                           "kept_clones": [], "dry_run": false})
    );
}

/// The golden stores of format versions 1 and 2: forgetting either
/// snapshot leaves the other whole.
#[test]
fn forget_in_golden_stores_keeps_what_the_other_snapshot_needs() {
    for v in ["golden-v1", "golden-v2"] {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("snapshots")
            .join(v)
            .join("store");
        for which in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            let store = dir.path().join("store");
            for e in walkdir::WalkDir::new(&src).into_iter().flatten() {
                let to = store.join(e.path().strip_prefix(&src).unwrap());
                if e.file_type().is_dir() {
                    fs::create_dir_all(&to).unwrap();
                } else {
                    fs::copy(e.path(), &to).unwrap();
                }
            }
            let root = dir.path().join("root");
            fs::create_dir_all(&root).unwrap();
            let list = json(&run_on(&root, &store, &["--json", "list"]));
            let ids: Vec<&str> = list["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap())
                .collect();
            let o = run_on(&root, &store, &["--yes", "forget", ids[which]]);
            assert_eq!(code(&o), 0, "{v}: {}", stderr(&o));
            let o = run_on(&root, &store, &["--json", "verify"]);
            assert_eq!(code(&o), 0, "{v} without {}: {}", ids[which], stderr(&o));
            let rep = json(&o);
            assert_eq!(rep["snapshots"], serde_json::json!([ids[1 - which]]));
            assert!(rep["objects_checked"].as_u64().unwrap() > 0);
        }
    }
}

#[test]
fn verify_exits_3_for_a_store_it_cannot_read_and_2_for_damage() {
    let sb = Sandbox::new();
    // no store there at all (a mistyped --store): not "0 problems"
    let o = sb.run(&["--json", "verify"]);
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(json(&o)["error"].as_str().unwrap().contains("no store"));
    let id = sb.snapshot("manual");
    assert_eq!(code(&sb.run(&["verify"])), 0);
    // a torn object: the right name, another content of the same size
    let h = blake3::hash(b"state 0\n").to_hex().to_string();
    let obj = sb.store.join("objects").join(&h[..2]).join(&h[2..]);
    fs::remove_file(&obj).unwrap();
    fs::write(&obj, b"state 9\n").unwrap();
    let o = sb.run(&["--json", "verify"]);
    assert_eq!(code(&o), 2);
    let v = json(&o);
    assert_eq!(v["problems"][0]["snapshot"], id.as_str());
    assert_eq!(v["problems"][0]["object"], h.as_str());
    assert_eq!(
        v["problems"][0]["paths"],
        serde_json::json!(["/etc/changing"])
    );
    // ... and one cut short
    fs::write(&obj, b"sta").unwrap();
    let o = sb.run(&["verify"]);
    assert_eq!(code(&o), 2);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&h) && out.contains("/etc/changing") && out.contains("corrupt"),
        "{out}"
    );
}
