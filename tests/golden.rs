//! Every version of guard must read the stores earlier versions wrote: the
//! golden sample stores under snapshots/ were written by format versions 1
//! and 2 (`scripts/make-golden.sh`), and each is read here.

use std::process::Output;

const GUARD: &str = env!("CARGO_BIN_EXE_guard");
const V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/golden-v1/store");
const V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/golden-v2/store");

fn guard(store: &str, args: &[&str]) -> Output {
    let root = tempfile::tempdir().unwrap();
    #[allow(clippy::disallowed_methods)] // tests drive the binary directly
    std::process::Command::new(GUARD)
        .arg("--root")
        .arg(root.path())
        .args(["--store", store, "--json"])
        .args(args)
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn golden_v1_store_lists_shows_verifies_and_diffs() {
    lists_shows_verifies_and_diffs(V1);
}

#[test]
fn golden_v2_store_lists_shows_verifies_and_diffs() {
    lists_shows_verifies_and_diffs(V2);
    // version 2: the timer snapshot carried the first one's ledger forward
    let list = json(&guard(V2, &["list"]));
    let one = list["snapshots"][0]["id"].as_str().unwrap();
    let two = list["snapshots"][1]["id"].as_str().unwrap();
    assert_eq!(
        json(&guard(V2, &["show", one]))["ledger_from"],
        serde_json::Value::Null
    );
    let show = json(&guard(V2, &["show", two]));
    assert_eq!(show["ledger_from"], one);
    assert_eq!(show["caps"][0]["path"], "/usr/bin/pinger");
}

fn lists_shows_verifies_and_diffs(store: &str) {
    let guard = |args: &[&str]| guard(store, args);
    let list = json(&guard(&["list"]));
    let snaps = list["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0]["label"], "golden-one");
    assert_eq!(snaps[1]["kind"], "timer");
    let (one, two) = (
        snaps[0]["id"].as_str().unwrap(),
        snaps[1]["id"].as_str().unwrap(),
    );

    let show = json(&guard(&["show", one]));
    assert_eq!(show["os"], "Golden 1");
    assert_eq!(show["caps"][0]["path"], "/usr/bin/pinger");
    assert_eq!(show["caps"][0]["caps"], "cap_net_raw=ep");
    assert_eq!(show["units"][0]["unit"], "sshd.service");
    assert!(show["unowned"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "/etc/caf\\xe9.conf"));

    let verify = guard(&["verify"]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let diff = json(&guard(&["diff", one, two]));
    let changes = diff["changes"].as_array().unwrap();
    let of = |p: &str| {
        changes
            .iter()
            .find(|c| c["path"] == p)
            .map(|c| c["change"].as_str().unwrap().to_string())
    };
    assert_eq!(of("/etc/pam.d/imap").as_deref(), Some("vanished"));
    assert_eq!(of("/etc/ssh/sshd_config").as_deref(), Some("modified"));
    let sshd = changes
        .iter()
        .find(|c| c["path"] == "/etc/ssh/sshd_config")
        .unwrap();
    assert!(sshd["detail"]
        .as_str()
        .unwrap()
        .contains("+PasswordAuthentication yes"));
}

#[test]
fn golden_manifests_keep_every_recorded_field() {
    for (store, version) in [(V1, 1), (V2, 2)] {
        keeps_every_recorded_field(store, version);
    }
}

fn keeps_every_recorded_field(store: &str, version: u32) {
    let list = json(&guard(store, &["list"]));
    let one = list["snapshots"][0]["id"].as_str().unwrap().to_string();
    let raw = std::fs::read(format!("{store}/snapshots/{one}.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(doc["format"], "guard-snapshot");
    assert_eq!(doc["version"], version);
    let entries = doc["manifest"]["entries"].as_array().unwrap();
    // version 1 stored an entry as an object, version 2 as an array
    let field = |e: &serde_json::Value, name: &str, index: usize| {
        if version == 1 {
            e[name].clone()
        } else {
            e[index].clone()
        }
    };
    let e = |p: &str| {
        entries
            .iter()
            .find(|e| field(e, "path", 0) == p)
            .unwrap()
            .clone()
    };
    assert_eq!(field(&e("/etc/initctl"), "kind", 1), "fifo");
    assert_eq!(field(&e("/etc/shadow"), "mode", 2), 0o600);
    assert_eq!(
        field(&e("/etc/pam.d/imap"), "xattrs", 12)["user.note"],
        hex_of("golden")
    );
    assert!(field(&e("/etc/ssh/sshd_config"), "xattrs", 12)["system.posix_acl_access"].is_string());
    assert_eq!(
        field(
            &e("/etc/systemd/system/multi-user.target.wants/sshd.service"),
            "target",
            10
        ),
        "/usr/lib/systemd/system/sshd.service"
    );
    assert!(
        entries
            .iter()
            .any(|e| field(e, "path", 0)["hex"].is_string()),
        "non-UTF-8 names are stored as hex"
    );
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
