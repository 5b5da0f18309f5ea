//! The terminal front end, driven for real: guard runs inside tmux, the test
//! reads the screen with `capture-pane` and types with `send-keys`, as a
//! person would. Covers what no scripted test can: deselecting items of a
//! restore plan, and typing (or mistyping) a destructive step's target.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guard::exec::{self, Cmd};

const GUARD: &str = env!("CARGO_BIN_EXE_guard");

/// A tmux session of its own (its own socket), killed on drop.
struct Tmux {
    socket: PathBuf,
    name: String,
}

impl Tmux {
    /// Starts `argv` in a new 100x30 terminal; the shell prints the exit
    /// code when it ends and stays, so the screen can still be read.
    fn start(dir: &Path, argv: &[String]) -> Tmux {
        let socket = dir.join("tmux.sock");
        let name = "guardtest".to_string();
        let quoted: Vec<String> = argv
            .iter()
            .map(|a| exec::shell_quote(a.as_bytes()))
            .collect();
        let line = format!("{}; echo EXIT=$?; sleep 60", quoted.join(" "));
        exec::stdout_of(
            &Cmd::new("tmux")
                .arg("-S")
                .arg(&socket)
                .args([
                    "new-session",
                    "-d",
                    "-s",
                    &name,
                    "-x",
                    "100",
                    "-y",
                    "30",
                    "sh",
                    "-c",
                    &line,
                ])
                .env("TERM", "xterm"),
        )
        .expect("tmux (Debian package tmux)");
        Tmux { socket, name }
    }

    fn screen(&self) -> String {
        let out = exec::stdout_of(&Cmd::new("tmux").arg("-S").arg(&self.socket).args([
            "capture-pane",
            "-p",
            // a long plan line wraps at 100 columns: read it whole
            "-J",
            "-t",
            &self.name,
        ]))
        .unwrap_or_default();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Waits until the screen shows `text`; panics with the screen if not.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {text:?} on the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, keys: &[&str]) {
        exec::stdout_of(
            &Cmd::new("tmux")
                .arg("-S")
                .arg(&self.socket)
                .args(["send-keys", "-t", &self.name])
                .args(keys),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = exec::output(
            &Cmd::new("tmux")
                .arg("-S")
                .arg(&self.socket)
                .arg("kill-server"),
        );
    }
}

fn sandbox() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = dir.path().join("store");
    fs::create_dir_all(root.join("etc/pam.d")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(root.join("etc/pam.d/imap"), "auth required pam_sss.so\n").unwrap();
    fs::write(root.join("etc/pam.d/smtp"), "auth required pam_sss.so\n").unwrap();
    (dir, root, store)
}

fn guard_argv(root: &Path, store: &Path, args: &[&str]) -> Vec<String> {
    let mut v = vec![
        GUARD.to_string(),
        "--root".into(),
        root.display().to_string(),
        "--store".into(),
        store.display().to_string(),
    ];
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

#[test]
fn restore_on_a_terminal_lets_the_admin_deselect_items() {
    let (dir, root, store) = sandbox();
    let o = exec::output(
        &Cmd::new(GUARD)
            .arg("--root")
            .arg(&root)
            .arg("--store")
            .arg(&store)
            .arg("snapshot"),
    )
    .unwrap();
    assert!(o.status.success());
    fs::remove_file(root.join("etc/pam.d/imap")).unwrap();
    fs::remove_file(root.join("etc/pam.d/smtp")).unwrap();

    let t = Tmux::start(
        dir.path(),
        &guard_argv(&root, &store, &["restore", "--vanished"]),
    );
    let s = t.wait_for("Restore these?");
    assert!(
        s.contains("/etc/pam.d/imap") && s.contains("/etc/pam.d/smtp"),
        "{s}"
    );
    // the cursor is on the first item (imap): space deselects it
    t.keys(&["Space"]);
    t.keys(&["Enter"]);
    let s = t.wait_for("EXIT=");
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(s.contains("restored /etc/pam.d/smtp"), "{s}");
    assert!(root.join("etc/pam.d/smtp").exists());
    assert!(
        !root.join("etc/pam.d/imap").exists(),
        "a deselected item was restored"
    );
}

/// foo VERSION, shipping `files`, built by the real dpkg-deb and installed
/// by the real dpkg into `root`.
fn dpkg_install(dir: &Path, root: &Path, version: &str, files: &[&str]) {
    let d = dir.join(format!("deb-{version}"));
    fs::create_dir_all(d.join("DEBIAN")).unwrap();
    fs::write(
        d.join("DEBIAN/control"),
        format!(
            "Package: foo\nVersion: {version}\nArchitecture: all\n\
             Maintainer: guard tests <root@localhost>\nDescription: guard test package\n"
        ),
    )
    .unwrap();
    for f in files {
        let p = d.join(f.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "[Service]\nExecStart=/usr/bin/true\n").unwrap();
    }
    let deb = dir.join(format!("foo_{version}_all.deb"));
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    if !root.join("var/lib/dpkg/status").exists() {
        fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    }
    for c in [
        Cmd::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&d)
            .arg(&deb),
        Cmd::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .arg(format!("--log={}", root.join("var/log/dpkg.log").display()))
            .args(["--force-not-root", "-i"])
            .arg(&deb),
    ] {
        let o = exec::output(&c).unwrap();
        assert!(o.status.success(), "{}: {o:?}", c.display());
    }
}

/// After an upgrade, what the package dropped on purpose starts unchecked
/// in the plan, the admin's own lost files checked: Enter alone brings
/// back the admin's files and leaves the dropped unit gone.
#[test]
fn restore_on_a_terminal_starts_with_what_packages_dropped_unchecked() {
    let (dir, root, store) = sandbox();
    let old = "/usr/lib/systemd/system/foo-old.service";
    let kept = "/usr/lib/systemd/system/foo.service";
    dpkg_install(dir.path(), &root, "1.0-1", &[old, kept]);
    let o = exec::output(
        &Cmd::new(GUARD)
            .arg("--root")
            .arg(&root)
            .arg("--store")
            .arg(&store)
            .arg("snapshot"),
    )
    .unwrap();
    assert!(o.status.success(), "{o:?}");
    dpkg_install(dir.path(), &root, "2.0-1", &[kept]);
    assert!(!root.join(&old[1..]).exists());
    fs::remove_file(root.join("etc/pam.d/imap")).unwrap();
    fs::remove_file(root.join("etc/pam.d/smtp")).unwrap();

    let t = Tmux::start(
        dir.path(),
        &guard_argv(&root, &store, &["restore", "--vanished"]),
    );
    let s = t.wait_for("Restore these?");
    assert!(
        s.contains("the 1 its package dropped starts unchecked"),
        "{s}"
    );
    assert!(s.contains("(dropped by foo 1.0-1 -> 2.0-1)"), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for("EXIT=");
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(root.join("etc/pam.d/imap").exists(), "{s}");
    assert!(root.join("etc/pam.d/smtp").exists(), "{s}");
    assert!(
        !root.join(&old[1..]).exists(),
        "what the package dropped was restored unasked"
    );
}

const WIPE: &str = r#"version = 1
id = "wipe"
title = "Wipe a volume"
description = "A destructive step, for the terminal test."

[vars]
marker = "MARKER"

[[steps]]
id = "wipe"
title = "Wipe the volume"
explain = "Erases /dev/guardtest0 (here: touches a marker file)."
destructive = { target = "/dev/guardtest0", what = "erases everything on /dev/guardtest0" }
run = ["touch", "{marker}"]
"#;

fn wipe_root(marker: &Path) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, root, store) = sandbox();
    fs::create_dir_all(root.join("etc/guard/playbooks")).unwrap();
    fs::write(
        root.join("etc/guard/playbooks/wipe.toml"),
        WIPE.replace("MARKER", &marker.display().to_string()),
    )
    .unwrap();
    (dir, root, store)
}

/// Runs the wipe playbook on a terminal, picks Run, types `typed` as the
/// target's name; returns the final screen.
fn wipe_typing(typed: &str) -> (String, bool) {
    let marks = tempfile::tempdir().unwrap();
    let marker = marks.path().join("wiped");
    let (dir, root, store) = wipe_root(&marker);
    let t = Tmux::start(dir.path(), &guard_argv(&root, &store, &["run", "wipe"]));
    // a playbook of the root (not `/`) is walked once the person says so
    t.wait_for("Walk it anyway?");
    t.keys(&["Down"]);
    t.keys(&["Enter"]); // walk
    t.wait_for("Step wipe");
    t.keys(&["Enter"]); // Run
    t.wait_for("Type /dev/guardtest0");
    t.keys(&["-l", typed]);
    t.keys(&["Enter"]);
    let s = t.wait_for("EXIT=");
    (s, marker.exists())
}

#[test]
fn a_destructive_step_runs_only_when_the_target_is_typed() {
    let (screen, wiped) = wipe_typing("/dev/guardtest1");
    assert!(!wiped, "a mistyped name must not run the step:\n{screen}");
    assert!(screen.contains("/dev/guardtest0 was not typed"), "{screen}");
    assert!(screen.contains("EXIT=3"), "{screen}");

    let (screen, wiped) = wipe_typing("/dev/guardtest0");
    assert!(wiped, "typing the target's name runs the step:\n{screen}");
    assert!(screen.contains("EXIT=0"), "{screen}");
}

const ANSWERED: &str = r#"version = 1
id = "answered"
title = "An answers file on a terminal"

[[steps]]
id = "colour"
title = "Choose a colour"
explain = "Answered by the answers file."
ask = { var = "colour", prompt = "Which colour?", kind = "text" }

[[steps]]
id = "reboot"
title = "Reboot now"
explain = "A manual step: only the person can say it is done."
manual = "Reboot now, then: guard run answered --resume"

[[steps]]
id = "passphrase"
title = "A command that reads the terminal"
explain = "As cryptsetup luksFormat reads the passphrase."
interactive = true
run = ["sh", "-c", "if test -t 0; then echo stdin-is-the-terminal; else echo stdin-is-not-a-terminal; fi; echo colour=$1", "sh", "{colour}"]
"#;

/// An answers file at a terminal answers its questions and nothing more:
/// the manual step is still put to the person, and a command that reads
/// the terminal (cryptsetup's passphrase) gets it.
#[test]
fn an_answers_file_on_a_terminal_leaves_the_rest_to_the_person() {
    let (dir, root, store) = sandbox();
    fs::create_dir_all(root.join("etc/guard/playbooks")).unwrap();
    fs::write(root.join("etc/guard/playbooks/answered.toml"), ANSWERED).unwrap();
    let answers = dir.path().join("answers.toml");
    fs::write(
        &answers,
        "[answers]\ncolour = \"blue\"\nroot-playbook = \"walk\"\n",
    )
    .unwrap();
    let t = Tmux::start(
        dir.path(),
        &guard_argv(
            &root,
            &store,
            &[
                "run",
                "answered",
                "--answers",
                &answers.display().to_string(),
            ],
        ),
    );
    t.wait_for("Step colour");
    t.keys(&["Enter"]); // Run: the answers file answers the question
    let s = t.wait_for("Step reboot");
    assert!(
        s.contains("Which colour? blue (from the answers file)"),
        "{s}"
    );
    t.keys(&["Enter"]); // Run: the person confirms the manual step
    t.wait_for("Step passphrase");
    t.keys(&["Enter"]);
    let s = t.wait_for("EXIT=");
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(s.contains("stdin-is-the-terminal"), "{s}");
    assert!(s.contains("colour=blue"), "{s}");
}

/// `prune` plans without the lock and asks; another guard forgets the
/// newest `pre` while the question is on the screen. Applying the plan
/// as shown would drop the only `pre` left, the baseline: under the lock
/// the plan is made again, and what it now keeps stays.
#[test]
fn prune_confirmed_after_the_store_changed_keeps_what_the_policy_now_keeps() {
    let (dir, root, store) = sandbox();
    let snap = |n: &str| {
        fs::write(root.join("etc/changing"), n).unwrap();
        let o = exec::output(
            &Cmd::new(GUARD)
                .arg("--root")
                .arg(&root)
                .arg("--store")
                .arg(&store)
                .args(["snapshot", "--kind", "pre"]),
        )
        .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let (old, new) = (snap("1"), snap("2"));
    let t = Tmux::start(
        dir.path(),
        &guard_argv(&root, &store, &["prune", "--keep", "1"]),
    );
    let s = t.wait_for("(y/n)");
    assert!(s.contains(&format!("prune: {old}")), "{s}");
    let o = exec::output(
        &Cmd::new(GUARD)
            .arg("--root")
            .arg(&root)
            .arg("--store")
            .arg(&store)
            .args(["--yes", "forget", &new]),
    )
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t.keys(&["y"]);
    let s = t.wait_for("EXIT=");
    assert!(
        store.join("snapshots").join(format!("{old}.json")).exists(),
        "the last pre, now the baseline, was pruned:\n{s}"
    );
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(s.contains("1 of them kept"), "{s}");
}

const TALKS: &str = r#"version = 1
id = "talks"
title = "A command that talks to the terminal"

[[steps]]
id = "passphrase"
title = "A command that reads the terminal"
explain = "As cryptsetup luksFormat reads the passphrase, and prints."
interactive = true
run = ["sh", "-c", "if test -t 0; then echo said-on-the-terminal; fi"]
"#;

/// `guard --json run` at a terminal, its stdout sent to a file: a command
/// that gets the terminal (cryptsetup's passphrase) still has its stdin,
/// and what it prints shows on the screen, not in front of the one JSON
/// document on guard's stdout.
#[test]
fn an_interactive_step_prints_on_the_terminal_not_into_the_json() {
    let (dir, root, store) = sandbox();
    fs::create_dir_all(root.join("etc/guard/playbooks")).unwrap();
    fs::write(root.join("etc/guard/playbooks/talks.toml"), TALKS).unwrap();
    let out = dir.path().join("out.json");
    let mut argv: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "exec \"$0\" \"$@\" > {}",
            exec::shell_quote(out.as_os_str().as_encoded_bytes())
        ),
    ];
    argv.extend(guard_argv(
        &root,
        &store,
        &["--json", "--yes", "run", "talks"],
    ));
    let t = Tmux::start(dir.path(), &argv);
    // (a playbook of the root, not `/`: --yes alone does not walk it)
    t.wait_for("Walk it anyway?");
    t.keys(&["Down"]);
    t.keys(&["Enter"]);
    let s = t.wait_for("EXIT=");
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(s.contains("said-on-the-terminal"), "{s}");
    let text = fs::read_to_string(&out).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{text}"));
    assert_eq!(doc["finished"], true, "{doc}");
}
