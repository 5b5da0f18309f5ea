//! The capability ledger across snapshot kinds, with real `setcap` on a
//! temporary root: manual snapshots walk the caps roots in full, timer
//! snapshots carry the newest full walk forward and re-probe it.

mod common;

use common::{run, Sys};
use serde_json::Value;

fn snapshot(s: &Sys, kind: &str) -> String {
    let out = s.ok(&["snapshot", "--json", "--kind", kind]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn show(s: &Sys, id: &str) -> Value {
    let out = s.cmd().args(["show", id, "--json"]).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn capped(v: &Value) -> Vec<String> {
    v["caps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["path"].as_str().unwrap(),
                c["caps"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn timer_snapshots_carry_the_ledger_forward_and_manual_ones_walk_it() {
    let s = Sys::new();
    s.write("/etc/hostname", "mail\n");
    s.write("/usr/bin/imapd", "binary 1\n");
    s.write("/usr/bin/webd", "binary 2\n");
    let imapd = s.path("/usr/bin/imapd");
    let webd = s.path("/usr/bin/webd");
    run(&["setcap", "cap_net_bind_service=ep", imapd.to_str().unwrap()]);

    let first = snapshot(&s, "manual");
    let v = show(&s, &first);
    assert_eq!(v["ledger_from"], Value::Null, "a manual snapshot walks");
    assert_eq!(capped(&v), ["/usr/bin/imapd cap_net_bind_service=ep"]);

    // a capability set by hand, and one taken away
    run(&["setcap", "cap_net_raw=ep", webd.to_str().unwrap()]);
    run(&["setcap", "-r", imapd.to_str().unwrap()]);

    // the timer snapshot re-probes what the walk found: the loss shows,
    // the new capability waits for the next full walk
    let timer = snapshot(&s, "timer");
    let v = show(&s, &timer);
    assert_eq!(v["ledger_from"], first.as_str());
    assert!(capped(&v).is_empty(), "{:?}", capped(&v));
    let again = snapshot(&s, "timer");
    assert_eq!(show(&s, &again)["ledger_from"], first.as_str());

    // pre, post and manual snapshots always walk in full
    for kind in ["pre", "post", "manual"] {
        let id = snapshot(&s, kind);
        let v = show(&s, &id);
        assert_eq!(v["ledger_from"], Value::Null, "{kind}");
        assert_eq!(capped(&v), ["/usr/bin/webd cap_net_raw=ep"], "{kind}");
    }
    // and the next timer snapshot carries the newest full walk
    let later = snapshot(&s, "timer");
    let v = show(&s, &later);
    assert_ne!(v["ledger_from"], first.as_str());
    assert_eq!(capped(&v), ["/usr/bin/webd cap_net_raw=ep"]);

    // guard show says where a carried ledger comes from
    let out = s.cmd().args(["show", &later]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("carried forward from"), "{text}");
}

#[test]
fn a_replaced_binary_on_a_carried_ledger_is_hashed_again() {
    let s = Sys::new();
    s.write("/etc/hostname", "mail\n");
    s.write("/usr/sbin/ping", "version 1\n");
    let ping = s.path("/usr/sbin/ping");
    run(&["setcap", "cap_net_raw=ep", ping.to_str().unwrap()]);
    let first = snapshot(&s, "manual");

    // replaced like a package manager does (new inode), capability set
    // again by its maintainer script
    s.write("/usr/sbin/ping.new", "version 2, longer\n");
    std::fs::rename(s.path("/usr/sbin/ping.new"), &ping).unwrap();
    run(&["setcap", "cap_net_raw=ep", ping.to_str().unwrap()]);
    let timer = snapshot(&s, "timer");
    assert_eq!(show(&s, &timer)["ledger_from"], first.as_str());

    // then the capability goes: restoring from the full walk says the
    // binary changed since; from the timer snapshot (whose ledger was
    // re-probed, not copied) it is the same binary
    run(&["setcap", "-r", ping.to_str().unwrap()]);
    let plan = |id: &str| {
        let out = s
            .cmd()
            .args(["restore", "--caps", "--dry-run", "--from", id])
            .output()
            .unwrap();
        assert!(out.status.success());
        // a dry run's plan is its output, on stdout
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let from_first = plan(&first);
    assert!(from_first.contains("/usr/sbin/ping"), "{from_first}");
    assert!(from_first.contains("binary changed since"), "{from_first}");
    let from_timer = plan(&timer);
    assert!(from_timer.contains("/usr/sbin/ping"), "{from_timer}");
    assert!(!from_timer.contains("binary changed since"), "{from_timer}");
}

#[test]
fn guard_toml_can_make_timer_snapshots_walk_the_ledger() {
    let s = Sys::new();
    s.write(
        "/etc/guard/guard.toml",
        "version = 1\ntimer-ledger = \"walk\"\n",
    );
    s.write("/usr/bin/imapd", "binary 1\n");
    let first = snapshot(&s, "manual");
    assert!(capped(&show(&s, &first)).is_empty());
    let imapd = s.path("/usr/bin/imapd");
    run(&["setcap", "cap_net_bind_service=ep", imapd.to_str().unwrap()]);
    let timer = snapshot(&s, "timer");
    let v = show(&s, &timer);
    assert_eq!(v["ledger_from"], Value::Null);
    assert_eq!(capped(&v), ["/usr/bin/imapd cap_net_bind_service=ep"]);

    // a value guard does not know is refused, naming the file
    s.write(
        "/etc/guard/guard.toml",
        "version = 1\ntimer-ledger = \"sometimes\"\n",
    );
    let out = s
        .cmd()
        .args(["snapshot", "--kind", "timer"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("guard.toml"));
}
