//! The command-line contract of DESIGN §2 where scripts lean on it: a
//! usage error is exit 3 (never clap's 2, which means CRITICAL), `--json`
//! puts exactly one JSON document on stdout whatever happens, its keys are
//! snake_case, and a reader that goes away early does not turn the result
//! into a panic.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::Sys;
use serde_json::Value;

/// (exit code, stdout, stderr) of `guard ARGS…` on the sandbox.
fn guard(sys: &Sys, args: &[&str]) -> (i32, String, String) {
    let out = sys.cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exactly one JSON document on stdout, parsed.
fn one_document(stdout: &str) -> Value {
    let mut docs = serde_json::Deserializer::from_str(stdout).into_iter::<Value>();
    let first = docs.next().expect("a JSON document on stdout").unwrap();
    assert!(docs.next().is_none(), "more than one document:\n{stdout}");
    first
}

fn sandbox() -> Sys {
    let sys = Sys::new();
    sys.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n")
        .write("/etc/group", "root:x:0:\n")
        .write("/etc/motd", "hello\n");
    sys
}

#[test]
fn usage_errors_are_exit_3_with_the_error_document() {
    let sys = sandbox();
    for args in [
        &["--json", "check", "--bogus"][..],
        &["--json", "show"],
        &["--json", "snapshot", "--kind", "weird"],
        &["--json", "prune", "--keep", "abc"],
        &["check", "--json", "--against", "x", "--acks"],
    ] {
        let (code, out, err) = guard(&sys, args);
        assert_eq!(code, 3, "{args:?}: {err}");
        let doc = one_document(&out);
        let msg = doc["error"].as_str().unwrap_or_default();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{args:?}: {doc}");
        assert!(err.contains("Usage") || err.contains("error"), "{err}");
    }
    // without --json: the message alone, still exit 3
    let (code, out, _) = guard(&sys, &["check", "--bogus"]);
    assert_eq!((code, out.as_str()), (3, ""));
    // asking for help or the version is no error
    assert_eq!(guard(&sys, &["--help"]).0, 0);
    let (code, out, _) = guard(&sys, &["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("guard "), "{out}");
}

#[test]
fn a_listing_with_a_corrupt_snapshot_is_one_document_and_exit_3() {
    let sys = sandbox();
    sys.snapshot();
    sys.snapshot();
    corrupt_a_manifest(&sys);
    let (code, out, err) = guard(&sys, &["--json", "list"]);
    assert_eq!(code, 3, "{err}");
    let doc = one_document(&out);
    let rows = doc["snapshots"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{doc}");
    assert!(rows.iter().any(|r| r["error"].is_string()), "{doc}");
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn acknowledging_with_json_prints_the_acknowledgements() {
    let sys = sandbox();
    sys.snapshot();
    // only a finding there is can be acknowledged
    sys.write("/etc/motd", "maintenance tonight\n");
    let (code, out, err) = guard(
        &sys,
        &["--json", "check", "--ack", "file/modified:/etc/motd"],
    );
    assert_eq!(code, 0, "{err}");
    let doc = one_document(&out);
    let acks = doc["acks"].as_array().unwrap();
    assert_eq!(acks.len(), 1, "{doc}");
    assert_eq!(acks[0]["finding"], "file/modified");
    assert_eq!(acks[0]["path"], "/etc/motd");
    assert_eq!(doc["version"], 2, "{doc}");
    assert_eq!(
        acks[0]["fingerprints"].as_array().unwrap().len(),
        1,
        "{doc}"
    );
}

#[test]
fn json_keys_are_snake_case_in_a_playbook_too() {
    fn keys(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    out.push(k.clone());
                    keys(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }
    let sys = sandbox();
    let (code, out, err) = guard(&sys, &["--json", "playbook", "show", "luks-guest-move"]);
    assert_eq!(code, 0, "{err}");
    let doc = one_document(&out);
    let mut all = Vec::new();
    keys(&doc, &mut all);
    assert!(all.iter().any(|k| k == "applies_to"), "{all:?}");
    let kebab: Vec<_> = all.iter().filter(|k| k.contains('-')).collect();
    assert!(kebab.is_empty(), "{kebab:?}");
}

#[test]
fn a_playbook_run_with_json_prints_one_document() {
    let sys = sandbox();
    sys.write(
        "/etc/guard/playbooks/hello.toml",
        r#"
version = 1
id = "hello"
title = "two steps"

[[steps]]
id = "one"
title = "says hello"
explain = "x"
run = ["echo", "hello"]

[[steps]]
id = "two"
title = "says it again"
explain = "x"
run = ["echo", "again"]
"#,
    );
    let answers = common::root_playbook_answers();
    let answers = answers.path().to_str().unwrap();
    let (code, out, err) = guard(
        &sys,
        &["--json", "run", "hello", "--yes", "--answers", answers],
    );
    assert_eq!(code, 0, "{err}");
    let doc = one_document(&out);
    assert_eq!(doc["playbook"], "hello");
    assert_eq!(doc["finished"], true);
    let steps: Vec<_> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, [("one", "done"), ("two", "done")]);

    let (code, out, err) = guard(&sys, &["--json", "run", "hello", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let doc = one_document(&out);
    assert!(doc["script"].as_str().unwrap().contains("echo"), "{doc}");
}

/// `guard check --json | head -c0`: the reader is gone before guard
/// writes. The exit code stays the check's (0 here), not a panic's 101.
#[test]
fn a_reader_that_goes_away_does_not_change_the_exit_code() {
    let sys = sandbox();
    sys.snapshot();
    // (`completions` and `man` too: clap_complete panicked on the closed
    // pipe of `guard completions bash | head`, exit 101)
    for args in [
        &["--json", "check"][..],
        &["check"],
        &["list"],
        &["completions", "bash"],
        &["man"],
    ] {
        #[allow(clippy::disallowed_methods)] // the binary, with its stdout piped
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_guard"))
            .arg("--root")
            .arg(sys.root())
            .arg("--store")
            .arg(sys.store.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A command's `--help` lists its own options first and the global ones
/// under a heading of their own: interleaved, `--root` and `--store` stood
/// between `--against` and `--ack` in `guard check --help`.
#[test]
fn help_keeps_a_commands_own_options_apart_from_the_global_ones() {
    let sys = sandbox();
    for (cmd, own) in [
        (
            &["check", "--help"][..],
            &["--against", "--ack", "--unack", "--acks"][..],
        ),
        (
            &["restore", "--help"],
            &["--from", "--vanished", "--caps", "--dry-run"],
        ),
        (&["run", "--help"], &["--dry-run", "--answers", "--resume"]),
        (&["prune", "--help"], &["--keep", "--dry-run"]),
    ] {
        let (code, out, err) = guard(&sys, cmd);
        assert_eq!(code, 0, "{cmd:?}: {err}");
        let global = out
            .find("Global options:")
            .unwrap_or_else(|| panic!("{cmd:?}: no global heading:\n{out}"));
        // where the option's own line starts (help text may name others)
        let line = |o: &str| {
            out.find(&format!("\n      {o} "))
                .unwrap_or_else(|| panic!("{cmd:?}: no line for {o}:\n{out}"))
        };
        for o in own {
            assert!(
                line(o) < global,
                "{cmd:?}: {o} among the global options:\n{out}"
            );
        }
        for g in ["--root", "--store", "--json", "--yes", "--no-progress"] {
            assert!(
                line(g) > global,
                "{cmd:?}: {g} before the global heading:\n{out}"
            );
        }
    }
    // every argument says what it is
    for cmd in [
        &["diff", "--help"][..],
        &["verify", "--help"],
        &["forget", "--help"],
        &["prune", "--help"],
        &["hooks", "--help"],
        &["units", "--help"],
        &["playbook", "show", "--help"],
    ] {
        let (code, out, _) = guard(&sys, cmd);
        assert_eq!(code, 0, "{cmd:?}");
        for line in out.lines() {
            let t = line.trim();
            let bare = (t.starts_with('<') || t.starts_with('[') || t.starts_with("--"))
                && !t.contains("  ");
            assert!(!bare, "{cmd:?}: {t:?} has no help:\n{out}");
        }
    }
}

/// Every string key of a document and its values, recursively: (key, value).
fn strings(v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push((k.clone(), v.clone()));
                strings(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// DESIGN §2: a name that is not UTF-8 is written `\xNN` in output, in
/// every document: the store's own `{"hex": …}` form of such a name is for
/// manifests, never for `show` or `restore`.
#[test]
fn non_utf8_names_are_escaped_in_show_and_restore_documents() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let sys = sandbox();
    let raw = |p: &[u8]| sys.root().join(OsStr::from_bytes(&p[1..]));
    // a capped binary (setcap on a plain name, then renamed: the xattr
    // goes with the inode), an enabled unit and a file of its own
    sys.write("/usr/bin/capped", "#!/bin/sh\n");
    sys.chmod("/usr/bin/capped", 0o755);
    common::run(&[
        "setcap",
        "cap_net_bind_service=ep",
        sys.path("/usr/bin/capped").to_str().unwrap(),
    ]);
    std::fs::rename(sys.path("/usr/bin/capped"), raw(b"/usr/bin/cap\xfeped")).unwrap();
    std::fs::create_dir_all(sys.path("/etc/systemd/system/multi-user.target.wants")).unwrap();
    std::fs::write(
        raw(b"/etc/systemd/system/m\xffil.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        OsStr::from_bytes(b"/etc/systemd/system/m\xffil.service"),
        raw(b"/etc/systemd/system/multi-user.target.wants/m\xffil.service"),
    )
    .unwrap();
    std::fs::write(raw(b"/etc/own\xfdfile"), "mine\n").unwrap();

    let (code, out, err) = guard(&sys, &["--json", "snapshot"]);
    assert_eq!(code, 0, "{err}");
    let id = one_document(&out)["id"].as_str().unwrap().to_string();

    let (code, out, err) = guard(&sys, &["--json", "show", &id]);
    assert_eq!(code, 0, "{err}");
    let doc = one_document(&out);
    let caps: Vec<_> = doc["caps"].as_array().unwrap().iter().collect();
    assert_eq!(caps.len(), 1, "{doc}");
    assert_eq!(caps[0]["path"], "/usr/bin/cap\\xfeped", "{doc}");
    let units = doc["units"].as_array().unwrap();
    assert!(
        units
            .iter()
            .any(|u| u["link"] == "/etc/systemd/system/multi-user.target.wants/m\\xffil.service"),
        "{doc}"
    );
    let mut all = Vec::new();
    strings(&doc, &mut all);
    assert!(all.iter().all(|(k, _)| k != "hex"), "{doc}");

    // restore names what it skips the same way
    #[allow(clippy::disallowed_methods)] // the binary, given a raw name
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guard"))
        .arg("--root")
        .arg(sys.root())
        .arg("--store")
        .arg(sys.store.path())
        .args(["--json", "restore", "--dry-run"])
        .arg(OsStr::from_bytes(b"/etc/own\xfdfile"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = one_document(&stdout);
    assert_eq!(doc["skipped"][0]["path"], "/etc/own\\xfdfile", "{doc}");
    let mut all = Vec::new();
    strings(&doc, &mut all);
    assert!(all.iter().all(|(k, _)| k != "hex"), "{doc}");
}

/// A name or content from the guarded system is data, never terminal
/// control: an unprivileged user can name a file in a directory guard
/// scans `evil ESC]2;…BEL`, a hostile guest image can hold anything, and
/// printed raw an escape sequence retitles, recolours or rewrites the
/// screen the administrator decides a restore on. Text output writes every
/// control character but newline and tab `\xNN`; JSON keeps the name
/// exact (serde escapes it as `\u001b`).
#[test]
fn control_characters_from_the_system_are_escaped_in_text_output() {
    let sys = sandbox();
    let name = "/etc/evil\x1b]2;owned\x07\x1b[2K\rname.conf";
    sys.write(name, "a=1\n");
    sys.write("/etc/app.conf", "a=1\n");
    let (code, _, err) = guard(&sys, &["snapshot"]);
    assert_eq!(code, 0, "{err}");
    sys.rm(name);
    sys.write("/etc/app.conf", "a=2\n\x1b]2;owned\x07\n");

    let mut all = String::new();
    for args in [
        &["check"][..],
        &["diff"],
        &["restore", "--vanished", "--dry-run"],
        &["restore", "--dry-run", name],
    ] {
        let (_, out, err) = guard(&sys, args);
        all.push_str(&out);
        all.push_str(&err);
    }
    let (_, out, err) = guard(&sys, &["check"]);
    for l in out.lines() {
        assert!(l.chars().count() <= 80, "wider than 80 columns: {l:?}");
    }
    assert!(
        !all.contains(['\x1b', '\x07', '\r']),
        "a control character printed raw:\n{all}"
    );
    assert!(
        out.contains("/etc/evil\\x1b]2;owned\\x07\\x1b[2K\\x0dname.conf"),
        "{out}{err}"
    );
    assert!(
        all.contains("restore") && all.contains("name.conf"),
        "{all}"
    );

    // JSON names the path as text does, `\xNN` for what is no plain
    // text (as for bytes that are not UTF-8), and stays one document
    let (_, out, _) = guard(&sys, &["--json", "check"]);
    let doc = one_document(&out);
    let paths: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["paths"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        paths.contains(&"/etc/evil\\x1b]2;owned\\x07\\x1b[2K\\x0dname.conf"),
        "{doc}"
    );

    // A newline in a name cannot add a line: not to the restore plan
    // (a fake `write /etc/shadow` item), not to the check's verdict.
    let fake = "/etc/z\n  write       \u{2215}etc\u{2215}shadow (2 bytes, 0644 0:0)";
    sys.write(fake, "x\n");
    let (code, _, err) = guard(&sys, &["snapshot"]);
    assert_eq!(code, 0, "{err}");
    sys.rm(fake);
    let (_, out, _) = guard(&sys, &["restore", "--vanished", "--dry-run"]);
    let writes: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("write"))
        .collect();
    assert!(
        writes.iter().all(|l| l.contains("/etc/z\\x0a  write")),
        "a name made a line of its own:\n{out}"
    );
    let (_, out, _) = guard(&sys, &["check"]);
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with("write")),
        "a name made a line of its own:\n{out}"
    );
    // and a JSON document with a DEL or a C1 character in it is still JSON
    let (_, out, _) = guard(&sys, &["--json", "show", "ab\x7fcd\u{85}"]);
    one_document(&out);
}

/// A command with subcommands of its own, given none (`guard vm`), is a
/// usage error like any other: clap answers it with the command's help,
/// which has no error message, so the error document must not carry the
/// help's first line (the command's description) as if it were one. Nor
/// does it offer the internal `hook-run`.
#[test]
fn a_missing_subcommand_is_named_in_the_error_document() {
    let sys = sandbox();
    for (args, names) in [
        (&["--json", "vm"][..], &["guard vm", "list", "clone"][..]),
        (&["playbook", "--json"], &["guard playbook", "list", "show"]),
        (&["--json"], &["'guard'", "snapshot", "check", "restore"]),
    ] {
        let (code, out, err) = guard(&sys, args);
        assert_eq!(code, 3, "{args:?}: {err}");
        let doc = one_document(&out);
        let msg = doc["error"].as_str().unwrap_or_default();
        assert!(msg.contains("requires a subcommand"), "{args:?}: {msg}");
        for n in names {
            assert!(msg.contains(n), "{args:?}: {n} not in {msg}");
        }
        assert!(!msg.contains("hook-run"), "{args:?}: {msg}");
        // nor in what a person reads on stderr (a command's help, or the
        // same line)
        assert!(!err.contains("hook-run"), "{args:?}: {err}");
    }
    // (the same without --json)
    let (code, _, err) = guard(&sys, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("snapshot, list, show"), "{err}");
    assert!(!err.contains("hook-run"), "{err}");
}

/// DESIGN §2: on an error, `{"error": MESSAGE}` is on stdout. A command
/// that has a document of its own to give (what a listing could read, what
/// a restore did before it stopped) gives that one, with the error in it:
/// a script that looks for `.error` sees the failure the exit code says.
#[test]
fn a_document_printed_before_an_error_carries_the_error() {
    let sys = sandbox();
    sys.snapshot();
    // (a document of a command that did not fail has no error in it)
    let (code, out, err) = guard(&sys, &["--json", "restore", "--vanished", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(one_document(&out).get("error").is_none(), "{out}");
    // a restore that meets a corrupt object stops there
    let objects = sys.store.path().join("objects");
    let h = blake3::hash(b"hello\n").to_hex().to_string();
    let obj = objects.join(&h[..2]).join(&h[2..]);
    std::fs::remove_file(&obj).unwrap();
    std::fs::write(&obj, b"not hello\n").unwrap();
    sys.write("/etc/motd", "changed\n");
    let (code, out, err) = guard(&sys, &["--json", "restore", "/etc/motd", "--yes"]);
    assert_eq!(code, 3, "{err}");
    let doc = one_document(&out);
    assert_eq!(doc["failed"]["path"], "/etc/motd", "{doc}");
    let msg = doc["error"].as_str().unwrap_or_default();
    assert!(msg.contains("restore stopped at /etc/motd"), "{doc}");
    assert!(err.contains(msg), "{err}");
    // a listing with a corrupt snapshot
    corrupt_a_manifest(&sys);
    let (code, out, err) = guard(&sys, &["--json", "list"]);
    assert_eq!(code, 3, "{err}");
    let doc = one_document(&out);
    let msg = doc["error"].as_str().unwrap_or_default();
    assert!(msg.contains("corrupt"), "{doc}");
    assert!(err.contains(msg), "{err}");
}

/// DESIGN §2: every finding has the same keys, whether or not it has a
/// fix or a longer text: `evidence` a list, `fix` and `detail` a string or
/// null; the summary counts them.
#[test]
fn every_finding_has_the_whole_shape() {
    let sys = sandbox();
    sys.write("/etc/pam.d/imap", "auth required pam_unix.so\n");
    let (code, v) = sys.check();
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["snapshot"], Value::Null, "{v}");
    assert!(!common::with_id(&v, "baseline/none").is_empty(), "{v}");
    sys.snapshot();
    sys.rm("/etc/pam.d/imap");
    sys.write("/etc/motd", "changed\n");
    sys.write("/etc/new.conf", "x\n");
    let (code, v) = sys.check();
    assert_eq!(code, 2, "{v}");
    assert!(v["snapshot"].is_string(), "{v}");
    assert!(v["root"].is_string(), "{v}");
    let findings = v["findings"].as_array().unwrap();
    assert!(findings.len() >= 3, "{v}");
    for f in findings {
        let keys: std::collections::BTreeSet<&str> =
            f.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in [
            "id", "severity", "paths", "message", "evidence", "fix", "detail",
        ] {
            assert!(keys.contains(k), "{k} missing: {f}");
        }
        assert!(f["evidence"].is_array(), "{f}");
        assert!(f["fix"].is_string() || f["fix"].is_null(), "{f}");
        assert!(f["detail"].is_string() || f["detail"].is_null(), "{f}");
        assert!(f["paths"].is_array(), "{f}");
    }
    // one without a longer text: its detail is there, as null
    let added = common::with_id(&v, "file/added");
    assert_eq!(added.len(), 1, "{v}");
    assert_eq!(added[0]["detail"], Value::Null, "{v}");
    let count = |s: &str| findings.iter().filter(|f| f["severity"] == s).count();
    assert_eq!(v["summary"]["critical"], count("critical"), "{v}");
    assert_eq!(v["summary"]["warning"], count("warning"), "{v}");
    assert_eq!(v["summary"]["info"], count("info"), "{v}");
}

/// Overwrites one snapshot's manifest with something that is not JSON.
fn corrupt_a_manifest(sys: &Sys) {
    let snaps = sys.store.path().join("snapshots");
    let victim = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    std::fs::write(&victim, b"{ not json").unwrap();
}

/// A dry run's plan is the command's output: `guard restore --vanished
/// --dry-run > plan.txt` gave an empty file, the plan having gone to
/// stderr. With --json the document holds it and stdout nothing else.
#[test]
fn a_restore_dry_run_prints_its_plan_on_stdout() {
    let sys = sandbox();
    sys.write("/etc/pam.d/imap", "auth required pam_unix.so\n");
    sys.snapshot();
    sys.rm("/etc/pam.d/imap");
    let (code, out, err) = guard(&sys, &["restore", "--vanished", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("restore plan from snapshot "), "{out}");
    assert!(out.contains("  write       /etc/pam.d/imap ("), "{out}");
    assert!(!err.contains("/etc/pam.d/imap"), "the plan twice: {err}");
    let (code, out, err) = guard(&sys, &["--json", "restore", "--vanished", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let doc = one_document(&out);
    assert_eq!(doc["dry_run"], true, "{doc}");
    let plan = doc["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 1, "{doc}");
    assert!(
        plan[0].as_str().unwrap().contains("/etc/pam.d/imap"),
        "{doc}"
    );
    // nothing was written
    assert!(!sys.path("/etc/pam.d/imap").exists());
}

/// A count in text output agrees with its number: `guard show` said "1
/// packages", a restore plan "(1 items)". And `guard list` padded a line
/// with no label into trailing spaces.
#[test]
fn text_counts_agree_with_their_number_and_list_lines_end_clean() {
    let sys = sandbox();
    // one package (owning /etc and /etc/foo.conf), installed by the real dpkg
    let work = tempfile::tempdir().unwrap();
    let deb = work.path().join("pkg");
    for (p, text) in [
        (
            "DEBIAN/control",
            "Package: foo\nVersion: 1.0-1\nArchitecture: all\n\
             Maintainer: guard tests <root@localhost>\nDescription: guard test package\n",
        ),
        ("etc/foo.conf", "x = 1\n"),
    ] {
        std::fs::create_dir_all(deb.join(p).parent().unwrap()).unwrap();
        std::fs::write(deb.join(p), text).unwrap();
    }
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(sys.path(d)).unwrap();
    }
    sys.write("/var/lib/dpkg/status", "");
    let pkg = work.path().join("foo.deb");
    let (deb, pkg) = (deb.to_str().unwrap(), pkg.to_str().unwrap());
    common::run(&["dpkg-deb", "--root-owner-group", "--build", deb, pkg]);
    let root = sys.root().display().to_string();
    // dpkg acting on the sandbox, never on this machine
    let dpkg = |args: &[&str]| {
        let opts = [
            format!("--root={root}"),
            format!("--admindir={root}/var/lib/dpkg"),
            format!("--log={root}/var/log/dpkg.log"),
        ];
        let mut argv: Vec<&str> = vec!["dpkg"];
        argv.extend(opts.iter().map(String::as_str));
        argv.push("--force-not-root");
        argv.extend(args);
        common::run(&argv);
    };
    dpkg(&["-i", pkg]);
    // a snapshot without a label
    let (code, id, err) = guard(&sys, &["snapshot"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = guard(&sys, &["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(id.trim()), "{out}");
    for l in out.lines() {
        assert_eq!(l, l.trim_end(), "trailing spaces in guard list");
    }
    let (code, out, err) = guard(&sys, &["show", id.trim()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("packages  1 installed (dpkg)"), "{out}");
    assert!(
        out.contains("owners    2 paths owned by 1 package\n"),
        "{out}"
    );
    sys.rm("/etc/motd");
    let (code, out, err) = guard(
        &sys,
        &["restore", "--from", id.trim(), "--vanished", "--dry-run"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" (1 item):\n"), "{out}");
    assert!(out.contains("/etc/motd (6 bytes, "), "{out}");
    // foo purged: its /etc/foo.conf is one of the two vanished paths, and
    // the line that counts what packages dropped says so in the singular
    dpkg(&["--force-remove-essential", "--purge", "foo"]);
    let (code, out, err) = guard(
        &sys,
        &["restore", "--from", id.trim(), "--vanished", "--dry-run"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" (2 items):\n"), "{out}");
    assert!(
        out.contains("1 of these 2 items is a path its package dropped on purpose (upgraded to a version that no longer ships it, or removed)"),
        "{out}"
    );
    let (code, out, err) = guard(&sys, &["verify"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("1 snapshot, "), "{out}");
    assert!(out.ends_with(" checked, 0 problems\n"), "{out}");
}

/// `prune` and `forget` give one document shape whatever the outcome:
/// with nothing to do, `prune --json` lacked the `dry_run` and
/// `kept_clones` keys its dry run has, and a real removal lacked
/// `dry_run`.
#[test]
fn prune_and_forget_documents_have_one_shape() {
    let keys = |doc: &Value| -> Vec<String> {
        let mut k: Vec<String> = doc.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let want = ["bytes", "dry_run", "kept_clones", "objects", "snapshots"];
    let sys = sandbox();
    sys.snapshot();
    let (code, out, err) = guard(&sys, &["--json", "prune"]);
    assert_eq!(code, 0, "{err}");
    let nothing = one_document(&out);
    assert_eq!(keys(&nothing), want, "{nothing}");
    assert_eq!(nothing["dry_run"], false, "{nothing}");
    assert_eq!(nothing["kept_clones"], serde_json::json!([]), "{nothing}");
    let (code, out, err) = guard(&sys, &["--json", "prune", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let nothing = one_document(&out);
    assert_eq!(keys(&nothing), want, "{nothing}");
    assert_eq!(nothing["dry_run"], true, "{nothing}");
    let (_, out, _) = guard(&sys, &["--json", "list"]);
    let id = one_document(&out)["snapshots"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, err) = guard(&sys, &["--json", "forget", &id, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let planned = one_document(&out);
    assert_eq!(keys(&planned), want, "{planned}");
    assert_eq!(planned["dry_run"], true, "{planned}");
    let (code, out, err) = guard(&sys, &["--json", "forget", &id, "--yes"]);
    assert_eq!(code, 0, "{err}");
    let done = one_document(&out);
    assert_eq!(keys(&done), want, "{done}");
    assert_eq!(done["dry_run"], false, "{done}");
    assert_eq!(done["snapshots"][0], id.as_str(), "{done}");
}

/// `GUARD_STORE=` (set, but to nothing: `GUARD_STORE=$STORE` with STORE
/// unset) was refused as "a value is required for '--store <DIR>'", a
/// flag the user never typed; and it broke a `--store` that was typed.
/// The message names the variable; an empty value is never read as
/// unset, which would act on the default store.
#[test]
fn an_empty_environment_variable_is_named_as_such() {
    let sys = sandbox();
    sys.snapshot();
    let bare = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = assert_cmd::Command::cargo_bin("guard").unwrap();
        c.env_remove("GUARD_ROOT")
            .env_remove("GUARD_STORE")
            .env_remove("GUARD_LIBVIRT_URI");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let root = sys.root().to_str().unwrap();
    let store = sys.store.path().to_str().unwrap();
    for (var, args) in [
        ("GUARD_STORE", &["--root", root, "--json", "list"][..]),
        ("GUARD_ROOT", &["--store", store, "--json", "list"]),
        (
            "GUARD_LIBVIRT_URI",
            &["--root", root, "--store", store, "--json", "vm", "list"],
        ),
        (
            "RESTIC_REPOSITORY",
            &["--root", root, "--store", store, "--json", "--yes", "push"],
        ),
    ] {
        let (code, out, err) = bare(&[(var, "")], args);
        assert_eq!(code, 3, "{var}: {err}");
        let msg = one_document(&out)["error"].as_str().unwrap().to_string();
        assert!(
            msg.contains(&format!("environment variable {var} is set but empty")),
            "{msg}"
        );
        assert!(!msg.contains("a value is required"), "{msg}");
        assert!(err.contains(&msg), "{err}");
    }
    // a --store typed on the command line wins over an empty GUARD_STORE
    let (code, out, err) = bare(
        &[("GUARD_STORE", "")],
        &["--root", root, "--store", store, "list"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("baseline"), "{out}");
    // and an empty --store typed is named as the flag
    let (code, _, err) = bare(&[], &["--root", root, "--store", "", "list"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--store needs a directory"), "{err}");
}

/// `guard --json --version` printed `guard 0.1.0`: with --json, stdout
/// holds one JSON document and nothing else (DESIGN §2), the version
/// included. (`--help`, `completions` and `man` give the text asked for.)
#[test]
fn the_version_with_json_is_a_document() {
    let sys = sandbox();
    for args in [&["--json", "--version"][..], &["--version", "--json"]] {
        let (code, out, err) = guard(&sys, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let doc = one_document(&out);
        assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"), "{doc}");
    }
    let (code, out, _) = guard(&sys, &["--version"]);
    assert_eq!(
        (code, out.trim()),
        (0, concat!("guard ", env!("CARGO_PKG_VERSION")))
    );
}

/// As with restore, a `forget`/`prune` dry run's plan is its output: it
/// named the snapshots it would drop on stderr only, so `guard prune
/// --dry-run > plan.txt` said how many but not which.
#[test]
fn a_forget_dry_run_names_the_snapshots_on_stdout() {
    let sys = sandbox();
    sys.snapshot();
    let (_, out, _) = guard(&sys, &["--json", "list"]);
    let id = one_document(&out)["snapshots"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, err) = guard(&sys, &["forget", &id, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("forget: {id}\nwould remove 1 snapshot, ")),
        "{out}"
    );
    assert!(!err.contains(&id), "the plan twice: {err}");
}

/// A walk that stops at a failed step has a document of its own to give:
/// text shows step one done and step two failed, but `--json` gave only
/// `{"error": …}`. Now it is the walk's document, the error in it.
#[test]
fn a_failed_walk_with_json_gives_its_steps_and_the_error() {
    let sys = sandbox();
    sys.write(
        "/etc/guard/playbooks/stops.toml",
        r#"
version = 1
id = "stops"
title = "fails at its second step"

[[steps]]
id = "one"
title = "says hello"
explain = "x"
run = ["echo", "hello"]

[[steps]]
id = "two"
title = "fails"
explain = "x"
run = ["false"]
"#,
    );
    let answers = common::root_playbook_answers();
    let answers = answers.path().to_str().unwrap();
    let (code, out, err) = guard(
        &sys,
        &["--json", "run", "stops", "--yes", "--answers", answers],
    );
    assert_eq!(code, 3, "{err}");
    let doc = one_document(&out);
    assert_eq!(doc["playbook"], "stops", "{doc}");
    assert_eq!(doc["finished"], false, "{doc}");
    let steps: Vec<_> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, [("one", "done"), ("two", "failed")], "{doc}");
    let msg = doc["error"].as_str().unwrap();
    assert!(msg.starts_with("step two (fails) failed"), "{doc}");
    assert!(err.contains("step two (fails) failed"), "{err}");
}

/// After `guard --root R --store S check`, a fix pasted as written
/// (`guard restore /etc/pam.d/imap`) would restore from the host's store
/// into the host's /etc. The fixes keep the contract's form (JSON
/// unchanged: paths and commands as seen inside the root), and the text
/// report says, once, how to run them for this root; pasted that way the
/// fix restores the file in the root.
#[test]
fn the_text_report_says_how_to_run_its_fixes_for_this_root() {
    let sys = sandbox();
    sys.write("/etc/pam.d/imap", "auth required pam_sss.so\n");
    sys.snapshot();
    sys.rm("/etc/pam.d/imap");
    let (code, v) = sys.check();
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(
        common::for_path(&v, "/etc/pam.d/imap")[0]["fix"],
        "guard restore /etc/pam.d/imap"
    );
    let (_, text) = sys.check_text();
    let root = sys.root().to_str().unwrap();
    let store = sys.store.path().to_str().unwrap();
    let want = format!("    guard --root {root} --store {store}\n");
    assert!(text.contains(&want), "{text}");
    // the fix, run the way the report says (that line, then the fix's
    // words after `guard`), acts on the root
    let printed: Vec<&str> = want.split_whitespace().skip(1).collect();
    let out = assert_cmd::Command::cargo_bin("guard")
        .unwrap()
        .args(&printed)
        .args(["--yes", "restore", "/etc/pam.d/imap"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sys.path("/etc/pam.d/imap").exists());
    // with nothing to fix, or on the host's own root, no such line
    let (_, text) = sys.check_text();
    assert!(!text.contains("where one says guard"), "{text}");
}
