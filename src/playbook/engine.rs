//! The playbook walk: one step at a time, confirmed, checked, journalled,
//! resumed, and the builtin steps it runs. What the walk reads and writes
//! besides (facts, variables and conditions, the journal, the dry-run
//! script) has a file of its own beside this one; the paths other modules
//! name are re-exported here.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::journal::{
    load_journal, now, save, step_lock_wait, CmdRecord, Journal, StepRecord, LOCK_WAIT,
};
use super::model::{Playbook, Step, Test};
use super::script::{describe_test, explain, fill, guard_run};
use super::vars::{check_rootable, rooted, set_builtin_var, subst, subst_argv, Vars};
use crate::app::{self, App};
use crate::exec::{self, Cmd};
use crate::store::SnapshotKind;
use crate::ui::StepChoice;

pub use super::facts::detect_facts;
pub use super::journal::{resumable_journal, snapshots_in_use};
pub use super::script::{render_script, render_step};
pub use super::vars::{refuse_reserved, reserved, Cond};

/// Lines of output kept per command in the journal and in error messages.
const TAIL: usize = 40;

// ---------------------------------------------------------------- the walk

/// Why a step failed: shown, journalled, the walk stops.
struct Failure(String);

/// The answers-file question that walks a playbook written for another
/// system (`other-os = "walk"`).
pub const OTHER_OS: &str = "other-os";

/// The answers-file question that walks a playbook read from the files of
/// a `--root` other than `/` (`root-playbook = "walk"`).
pub const ROOT_PLAYBOOK: &str = "root-playbook";

pub struct RunOpts<'a> {
    pub resume: bool,
    /// From the answers file: questions answered and variables preset.
    pub answers: Vars,
    /// That file, named when its answers are refused.
    pub answers_file: Option<&'a Path>,
    /// The playbook's file in the root, when it is not built in.
    pub from_root: Option<&'a str>,
}

/// Refuses, unless the person or the answers file says to walk it, a
/// playbook that is a file of a `--root` other than `/`. That root is
/// another system (a guest's disk mounted to be inspected or upgraded,
/// perhaps a compromised one), and its playbook's commands, `done-if`
/// and probe checks included, which run unasked, would run on this host
/// as root: a file there named `leap-upgrade.toml` replaces the built-in
/// walk of that name. Not an ordinary confirmation, so `--yes` alone
/// never gives it. The host's own `/etc/guard/playbooks` (`--root /`) is
/// the admin's, as built-in playbooks are guard's.
fn refuse_root_playbook(app: &App, pb: &Playbook, opts: &RunOpts) -> Result<()> {
    let Some(file) = opts.from_root else {
        return Ok(());
    };
    if app.root.path() == Path::new("/") {
        return Ok(());
    }
    let told = opts.resume
        && resumable_journal(app, &pb.id)
            .is_ok_and(|j| j.answers.get(ROOT_PLAYBOOK).is_some_and(|a| a == "walk"));
    if told {
        return Ok(());
    }
    let what = format!(
        "{} is not built into guard: it is {file} of the root {}, whose commands (its checks too) would run on this host as root",
        pb.id,
        app.root.path().display()
    );
    match app.ui.select(
        ROOT_PLAYBOOK,
        &format!("{what}. Walk it anyway?"),
        &["stop".into(), "walk".into()],
        0,
    ) {
        Ok(1) => Ok(()),
        Err(e) if opts.answers.contains_key(ROOT_PLAYBOOK) => Err(e),
        _ => bail!(
            "{what}: nothing done (to walk it anyway, answer {ROOT_PLAYBOOK} = \"walk\" under [answers] in an answers file; --yes alone does not)"
        ),
    }
}

pub fn walk(app: &App, pb: &Playbook, opts: &RunOpts) -> Result<i32> {
    // The answers join the variables below (the file's and, on --resume,
    // the journal's), over the facts: each set is checked here, before
    // anything runs.
    let file = match opts.answers_file {
        Some(p) => format!("answers file {}", p.display()),
        None => "the answers".into(),
    };
    refuse_reserved(&opts.answers, &file, true)?;
    refuse_root_playbook(app, pb, opts)?;
    let facts = detect_facts(app, &opts.answers);
    if !pb.applies_to.is_empty() {
        let os = facts.get("os_id").cloned().unwrap_or_default();
        let like = facts.get("os_id_like").cloned().unwrap_or_default();
        let fits = pb
            .applies_to
            .iter()
            .any(|a| *a == os || like.split_whitespace().any(|l| l == a));
        // Not an ordinary confirmation: `--yes` alone must not walk an
        // unattended run of another system's playbook, whose steps then fail
        // one by one at their probes (or worse, run). A person on a
        // terminal is asked; a script says so by name in its answers file,
        // as it does for retrying a failed step.
        // (a walk resumed after a reboot was told so when it started)
        let told = opts.resume
            && resumable_journal(app, &pb.id)
                .is_ok_and(|j| j.answers.get(OTHER_OS).is_some_and(|a| a == "walk"));
        if !fits && !told {
            let what = format!(
                "{} is written for {}; this system is {:?}",
                pb.id,
                pb.applies_to.join(", "),
                if os.is_empty() { "unknown" } else { &os }
            );
            let walk = app.ui.select(
                OTHER_OS,
                &format!("{what}. Walk it anyway?"),
                &["stop".into(), "walk".into()],
                0,
            );
            match walk {
                Ok(1) => {}
                // (an answer that is neither: said as it is)
                Err(e) if opts.answers.contains_key(OTHER_OS) => return Err(e),
                _ => bail!(
                    "{what}: nothing done (to walk it anyway, answer {OTHER_OS} = \"walk\" under [answers] in an answers file; --yes alone does not)"
                ),
            }
        }
    }
    let mut journal = if opts.resume {
        let j = resumable_journal(app, &pb.id)?;
        app.ui.say(&format!(
            "resuming {} started {} ({} recorded)",
            pb.id,
            j.started,
            crate::plural(j.steps.len(), "step")
        ));
        j
    } else {
        if let Some(old) = load_journal(app, &pb.id)? {
            if old.finished.is_none() && !old.steps.is_empty() {
                bail!(
                    "an unfinished run of {} (started {}) is in the journal: continue it with {} --resume",
                    pb.id, old.started, guard_run(app.root.path(), &app.store_dir, &pb.id)
                );
            }
            // Keep the finished run's record next to the new one.
            let stamp: String = old
                .started
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            app.store_write()?.write_doc_file(
                &format!("journals/{}-{stamp}.json", pb.id),
                &serde_json::to_vec_pretty(&old)?,
            )?;
        }
        Journal {
            version: 1,
            playbook: pb.id.clone(),
            started: now(),
            ..Default::default()
        }
    };
    journal.facts = facts.clone();
    refuse_changed_answers(pb, &journal, &opts.answers)?;
    // The answers file of this invocation wins over what an earlier one said
    // about questions not yet asked.
    journal.answers.extend(opts.answers.clone());
    let mut vars: Vars = pb.vars.clone();
    vars.extend(facts);
    vars.extend(journal.answers.clone());
    save(app, &journal)?;
    let total = pb.steps.len();
    // The steps; an error among them (a failed, refused or aborted step)
    // still leaves a walk to tell of: with --json, the document of the
    // steps so far carries the error (DESIGN §2), as text shows them.
    let walked = (|| -> Result<()> {
        for (n, step) in pb.steps.iter().enumerate() {
            let prev = journal.steps.iter().position(|r| r.id == step.id);
            if let Some(i) = prev {
                match journal.steps[i].status.as_str() {
                    "failed" => {
                        // Never retried silently: the person (or the answers
                        // file, `retry-STEP = "retry"`) must say so.
                        let r = &journal.steps[i];
                        app.ui.say(&format!(
                            "step {} failed last time: {}",
                            step.id,
                            r.note.clone().unwrap_or_default()
                        ));
                        let c = app.ui.select(
                            &format!("retry-{}", step.id),
                            &format!("Retry step {}?", step.id),
                            &["abort".into(), "retry".into()],
                            0,
                        );
                        if !matches!(c, Ok(1)) {
                            let why = match c {
                                Err(e) => format!(" ({e:#})"),
                                _ => String::new(),
                            };
                            bail!(
                                "step {} failed before and was not retried{why}; fix the cause, then {} --resume and choose retry (answers file: retry-{} = \"retry\" under [answers])",
                                step.id, guard_run(app.root.path(), &app.store_dir, &pb.id), step.id
                            );
                        }
                        // (its record stays until this attempt's replaces
                        // it, as `earlier`: an abort now leaves it failed)
                    }
                    "done" | "already-done"
                        if step
                            .done_if
                            .as_ref()
                            .map(|t| still_holds(app, t, &vars))
                            .transpose()?
                            == Some(false) =>
                    {
                        // A reboot locks a LUKS volume again, drops a loaded
                        // module: what the step did is gone, so it is done again.
                        app.ui.say(&format!(
                            "step {} was done, but its check no longer holds ({}): doing it again",
                            step.id,
                            describe_test(
                                step.done_if.as_ref().expect("matched"),
                                &vars,
                                app.root.path()
                            )
                        ));
                    }
                    _ => continue,
                }
            }
            let started = now();
            let record = |status: &str, note: Option<String>, cmds: Vec<CmdRecord>| StepRecord {
                id: step.id.clone(),
                status: status.into(),
                started: started.clone(),
                ended: now(),
                note,
                commands: cmds,
                earlier: vec![],
            };
            app.ui.say(&format!(
                "\n== step {}/{total}: {} ({})",
                n + 1,
                step.title,
                step.id
            ));
            if let Some(w) = &step.when {
                if !Cond::parse(w)?.eval(&vars) {
                    let why = step.when_text.clone().unwrap_or_else(|| w.clone());
                    app.ui.say(&format!("   not needed: only when {why}"));
                    journal.put(record(
                        "skipped",
                        Some(format!("condition false: {why}")),
                        vec![],
                    ));
                    save(app, &journal)?;
                    continue;
                }
            }
            if let Some(t) = &step.done_if {
                if test_passes(app, t, &vars)? {
                    app.ui.say("   already done");
                    journal.put(record("already-done", None, vec![]));
                    save(app, &journal)?;
                    continue;
                }
            }
            for line in explain(step, &vars).trim().lines() {
                app.ui.say(&format!("   {line}"));
            }
            if let Some(r) = &step.run {
                let argv = rooted(subst_argv(r, &vars, false)?, app.root.path());
                app.ui.say(&format!(
                    "   $ {}",
                    Cmd::new(&argv[0]).args(&argv[1..]).display()
                ));
            }
            let mut skipped = false;
            loop {
                match app.ui.step_choice(&step.id)? {
                    StepChoice::Run => break,
                    StepChoice::Details => {
                        app.ui.say(&render_step(
                            step,
                            &vars,
                            n,
                            total,
                            app.root.path(),
                            &app.store_dir,
                        ));
                    }
                    StepChoice::Skip => {
                        journal.put(record(
                            "skipped",
                            Some("skipped by the user".into()),
                            vec![],
                        ));
                        save(app, &journal)?;
                        skipped = true;
                        break;
                    }
                    StepChoice::Abort => {
                        save(app, &journal)?;
                        bail!(
                            "aborted at step {}; {} --resume continues there",
                            step.id,
                            guard_run(app.root.path(), &app.store_dir, &pb.id)
                        );
                    }
                }
            }
            if skipped {
                continue;
            }
            if let Some(d) = &step.destructive {
                let target = subst(&d.target, &vars, false)?.unwrap_or_default();
                let what = subst(&d.what, &vars, false)?.unwrap_or_default();
                let refused = match app.ui.confirm_destructive(&step.id, &target, &what) {
                    Ok(true) => None,
                    Ok(false) => Some(format!("{target} was not typed")),
                    Err(e) => Some(format!("{e:#}")),
                };
                if let Some(why) = refused {
                    journal.put(record("failed", Some(format!("refused: {why}")), vec![]));
                    save(app, &journal)?;
                    bail!("step {} refused: {why}", step.id);
                }
            }
            let mut cmds = Vec::new();
            let mut res = act(app, step, &mut vars, &mut journal.answers, &mut cmds);
            if res.is_ok() {
                if let Some(t) = &step.verify {
                    if !test_passes(app, t, &vars)? {
                        res = Err(Failure(format!(
                            "verification failed: {}",
                            describe_test(t, &vars, app.root.path())
                        )));
                    }
                }
            }
            match res {
                Ok(note) => {
                    journal.put(record("done", note, cmds));
                    save(app, &journal)?;
                }
                Err(Failure(why)) => {
                    let tail = cmds.last().map(|c| c.tail.clone()).unwrap_or_default();
                    journal.put(record("failed", Some(why.clone()), cmds));
                    save(app, &journal)?;
                    let mut msg = format!("step {} ({}) failed: {why}", step.id, step.title);
                    if !tail.is_empty() {
                        msg.push_str(&format!("\n--- last output ---\n{tail}\n---"));
                    }
                    if let Some(next) = &step.on_failure {
                        msg.push_str(&format!("\nwhat to do next: {}", fill(next, &vars).trim()));
                    }
                    msg.push_str(&format!(
                        "\nthe walk stopped here; when the cause is fixed, {} --resume asks before retrying this step",
                        guard_run(app.root.path(), &app.store_dir, &pb.id)
                    ));
                    bail!(msg);
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = walked {
        if app.json {
            let msg = format!("{e:#}");
            app.print_json(&crate::app::with_error(
                walk_document(pb, &journal),
                &Some(msg.clone()),
            ))?;
            return crate::app::failed_after_output(app, msg);
        }
        return Err(e);
    }
    journal.finished = Some(now());
    save(app, &journal)?;
    // The last check's verdict is above, among the steps' output; the
    // line a tired admin reads last must not sound like all is well when
    // that check found critical damage.
    if journal.answers.get("check_critical").map(String::as_str) == Some("yes") {
        app.ui.say(&format!(
            "\nplaybook {} finished, but its last check found critical damage (see above; \
             guard check shows it again)",
            pb.id
        ));
    } else {
        app.ui.say(&format!("\nplaybook {} finished", pb.id));
    }
    if app.json {
        app.print_json(&walk_document(pb, &journal))?;
    }
    Ok(0)
}

/// `guard --json run`'s document: the walk's steps as the journal has
/// them, and whether it finished.
fn walk_document(pb: &Playbook, journal: &Journal) -> serde_json::Value {
    serde_json::json!({
        "playbook": pb.id,
        "finished": journal.finished.is_some(),
        "steps": journal
            .steps
            .iter()
            .map(|s| serde_json::json!({ "id": s.id, "status": s.status, "note": s.note }))
            .collect::<Vec<_>>(),
    })
}

/// On resume, an answers file may not change what a question already
/// answered (or a probe already found): the steps done since relied on it.
/// A changed `target` would otherwise skip target-check before luksFormat.
pub fn refuse_changed_answers(pb: &Playbook, journal: &Journal, answers: &Vars) -> Result<()> {
    for step in &pb.steps {
        let done = journal
            .steps
            .iter()
            .any(|r| r.id == step.id && r.status == "done");
        let var = match (&step.ask, &step.probe) {
            (Some(a), _) => &a.var,
            (None, Some(p)) => &p.fact,
            _ => continue,
        };
        if !done {
            continue;
        }
        if let (Some(new), Some(old)) = (answers.get(var), journal.answers.get(var)) {
            if new != old {
                bail!(
                    "the answers file says {var} = {new:?}, but step {} of this walk already recorded {var} = {old:?} and the steps done since relied on it; \
                     give {old:?} (or leave {var} out) to resume, or start {} again from the beginning",
                    step.id,
                    pb.id
                );
            }
        }
    }
    Ok(())
}

/// Whether a done step's `done-if` still holds on resume. A false `cond`
/// says guard cannot tell here (arch-upgrade's reboot check needs the
/// running kernel, unknown under --root), not that the work was undone, so
/// only the command decides.
fn still_holds(app: &App, t: &Test, vars: &Vars) -> Result<bool> {
    if let Some(c) = &t.cond {
        if !Cond::parse(c)?.eval(vars) {
            return Ok(true);
        }
    }
    if t.run.is_none() {
        return Ok(true);
    }
    test_passes(app, t, vars)
}

fn test_passes(app: &App, t: &Test, vars: &Vars) -> Result<bool> {
    if let Some(c) = &t.cond {
        if !Cond::parse(c)?.eval(vars) {
            return Ok(false);
        }
    }
    if let Some(r) = &t.run {
        let argv = rooted(subst_argv(r, vars, false)?, app.root.path());
        check_rootable(&argv, app.root.path())?;
        let out = match exec::output(&Cmd::new(&argv[0]).args(&argv[1..])) {
            Ok(o) => o,
            Err(_) => return Ok(false),
        };
        if out.status.code() != Some(t.status.unwrap_or(0)) {
            return Ok(false);
        }
        if let Some(want) = &t.output {
            // Substituted like the command: `cr_{lv_name}` names this walk's
            // mapping, not any mapping.
            let want = subst(want, vars, false)?.unwrap_or_default();
            let text = String::from_utf8_lossy(&out.stdout);
            return Ok(text.contains(want.as_str()));
        }
    }
    Ok(true)
}

/// Runs one command, streaming its output; records it.
fn run_cmd(
    app: &App,
    argv: Vec<String>,
    feed: Option<&str>,
    interactive: bool,
    cmds: &mut Vec<CmdRecord>,
) -> Result<i32, Failure> {
    let cmd = Cmd::new(&argv[0]).args(&argv[1..]);
    if interactive && app.ui.is_interactive() {
        // Passphrases: the terminal goes to the command; nothing recorded.
        // (its stdout onto stderr, as every step's output: guard's stdout
        // is for guard's own output, with --json one document)
        let os: Vec<std::ffi::OsString> = argv[1..].iter().map(Into::into).collect();
        let code =
            exec::attached(Path::new(&argv[0]), &os).map_err(|e| Failure(format!("{e:#}")))?;
        cmds.push(CmdRecord {
            argv,
            exit: Some(code),
            tail: "(talked to the terminal; output not recorded)".into(),
        });
        return Ok(code);
    }
    let cmd = match feed {
        Some(f) => cmd.stdin_bytes(f.as_bytes().to_vec()),
        None => cmd,
    };
    // The command has no terminal, so no person answers what it asks: a
    // package's debconf question would go to debconf's fallback frontend,
    // which reads the answer from this stdin, taking the fed `y` (meant
    // for apt's "Do you want to continue?") as, say, a relay host. The
    // noninteractive frontend takes each question's default instead
    // (`dpkg-reconfigure PACKAGE` asks again later).
    let cmd = cmd.env("DEBIAN_FRONTEND", "noninteractive");
    // A spinner on a terminal; the output streams above it line by line.
    let sp = app.ui.spinner(&format!("running {}", argv[0]));
    let r = exec::run_streaming(&cmd, TAIL, &mut |l| {
        sp.println(&format!("   │ {l}"));
    });
    sp.finish();
    match r {
        Ok(s) => {
            let code = s.status.code().unwrap_or(-1);
            cmds.push(CmdRecord {
                argv,
                exit: Some(code),
                tail: s.tail,
            });
            Ok(code)
        }
        Err(e) => {
            cmds.push(CmdRecord {
                argv,
                exit: None,
                tail: format!("{e:#}"),
            });
            Err(Failure(format!("{e:#}")))
        }
    }
}

fn arg(step: &Step, vars: &Vars, key: &str) -> Result<Option<String>, Failure> {
    match step.with.get(key) {
        None => Ok(None),
        Some(v) => subst(v, vars, false).map_err(|e| Failure(format!("{e:#}"))),
    }
}

fn need(step: &Step, vars: &Vars, key: &str) -> Result<String, Failure> {
    arg(step, vars, key)?.ok_or_else(|| Failure(format!("builtin needs `{key}`")))
}

/// Performs a step's action; `Ok(note)` on success.
fn act(
    app: &App,
    step: &Step,
    vars: &mut Vars,
    set: &mut Vars,
    cmds: &mut Vec<CmdRecord>,
) -> Result<Option<String>, Failure> {
    let fail = |e: anyhow::Error| Failure(format!("{e:#}"));
    if let Some(r) = &step.run {
        let argv = rooted(subst_argv(r, vars, false).map_err(fail)?, app.root.path());
        check_rootable(&argv, app.root.path()).map_err(fail)?;
        // On a terminal the person answers the tool's own questions
        // (pacman's "Proceed?"), so a command that would be fed an answer off
        // a terminal gets the terminal instead; only a probe (a dry download)
        // is fed, as its output must be read.
        let interactive = step.interactive || (step.feed.is_some() && step.probe.is_none());
        let code = if step.probe.is_some() {
            match run_cmd(app, argv, step.feed.as_deref(), interactive, cmds) {
                Ok(c) => c,
                Err(Failure(e)) => {
                    app.ui.say(&format!("   probe could not run: {e}"));
                    -1
                }
            }
        } else {
            run_cmd(app, argv, step.feed.as_deref(), interactive, cmds)?
        };
        if let Some(p) = &step.probe {
            let tail = cmds.last().map(|c| c.tail.as_str()).unwrap_or("");
            let hit = p.patterns.iter().find(|pat| tail.contains(pat.as_str()));
            let v = if hit.is_some() { "yes" } else { "no" };
            vars.insert(p.fact.clone(), v.into());
            set.insert(p.fact.clone(), v.into());
            app.ui.say(&format!("   {} = {v}", p.fact));
            return Ok(Some(match hit {
                Some(h) => format!("{}=yes: output says {h:?}", p.fact),
                None => format!("{}=no (exit {code})", p.fact),
            }));
        }
        if code != 0 && !step.ok_codes.contains(&code) {
            return Err(Failure(format!("exit code {code}")));
        }
        return Ok((code != 0).then(|| format!("exit code {code} (counts as success)")));
    }
    if let Some(a) = &step.ask {
        let v = if a.choices.is_empty() {
            let default = a
                .default
                .as_ref()
                .and_then(|d| subst(d, vars, false).ok().flatten());
            app.ui
                .input(&a.var, &a.prompt, default.as_deref())
                .map_err(fail)?
        } else {
            let def = a
                .default
                .as_ref()
                .and_then(|d| a.choices.iter().position(|c| c == d))
                .unwrap_or(0);
            let i = app
                .ui
                .select(&a.var, &a.prompt, &a.choices, def)
                .map_err(fail)?;
            a.choices[i].clone()
        };
        validate_answer(&a.kind, &v).map_err(|e| Failure(format!("answer for {}: {e}", a.var)))?;
        vars.insert(a.var.clone(), v.clone());
        set.insert(a.var.clone(), v.clone());
        return Ok(Some(format!("{} = {v}", a.var)));
    }
    if let Some(m) = &step.manual {
        let text = subst(m, vars, true).map_err(fail)?.unwrap_or_default();
        for l in text.trim().lines() {
            app.ui.say(&format!("   » {l}"));
        }
        return Ok(Some("manual step confirmed".into()));
    }
    let b = step.builtin.as_deref().unwrap_or("");
    builtin(app, b, step, vars, set, cmds)
}

fn validate_answer(kind: &str, v: &str) -> Result<()> {
    if v.contains('\n') || v.contains('\0') {
        bail!("contains a newline or NUL byte");
    }
    let ok = match kind {
        "name" => {
            !v.is_empty()
                && !v.starts_with('-')
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        }
        "path" => v.starts_with('/') && !v.split('/').any(|c| c == ".."),
        "number" => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
        _ => true,
    };
    if !ok {
        bail!("{v:?} is not a valid {kind}");
    }
    Ok(())
}

fn size_of(p: &str) -> Result<u64> {
    let md = std::fs::metadata(p).map_err(|e| anyhow!("cannot stat {p}: {e}"))?;
    if md.file_type().is_block_device() {
        let out = exec::stdout_of(&Cmd::new("blockdev").args(["--getsize64", p]))?;
        let s = String::from_utf8_lossy(&out);
        return s
            .trim()
            .parse()
            .map_err(|_| anyhow!("blockdev --getsize64 {p}: {s:?}"));
    }
    Ok(md.len())
}

fn builtin(
    app: &App,
    b: &str,
    step: &Step,
    vars: &mut Vars,
    set: &mut Vars,
    cmds: &mut Vec<CmdRecord>,
) -> Result<Option<String>, Failure> {
    let fail = |e: anyhow::Error| Failure(format!("{e:#}"));
    match b {
        "snapshot" => {
            let label = arg(step, vars, "label")?;
            let kind = match arg(step, vars, "kind")?.as_deref() {
                Some("post") => SnapshotKind::Post,
                Some("manual") => SnapshotKind::Manual,
                _ => SnapshotKind::Pre,
            };
            // Waits out a timer's or hook's snapshot rather than stopping
            // the walk; the spinner starts after, not over the message.
            let store = app
                .store_write_waiting(
                    &format!("take the snapshot of step {}", step.id),
                    step_lock_wait(),
                )
                .map_err(fail)?;
            let sp = app.ui.spinner("snapshot");
            let out = app::snapshot(app, &store, kind, label).map_err(fail);
            sp.finish();
            let out = out?;
            app.ui.say(&format!(
                "   snapshot {} ({})",
                out.id,
                crate::plural(out.entries, "entry")
            ));
            set_builtin_var(vars, set, "snapshot_id", out.id.clone());
            Ok(Some(format!("snapshot {}", out.id)))
        }
        "check" => {
            let against = arg(step, vars, "against")?;
            let sp = app.ui.spinner("check");
            let rep = app::check(app, against.as_deref()).map_err(fail);
            sp.finish();
            let rep = rep?;
            for l in rep.to_text().lines() {
                app.ui.say(&format!("   │ {l}"));
            }
            let crit = rep.summary.critical > 0;
            let pam = rep.findings.iter().any(|f| f.id == "pam/service-vanished");
            for (k, v) in [("check_critical", crit), ("pam_vanished", pam)] {
                set_builtin_var(vars, set, k, if v { "yes" } else { "no" }.into());
            }
            if arg(step, vars, "fail-on")?.as_deref() == Some("critical") && crit {
                return Err(Failure(
                    "guard check found critical damage (see above)".into(),
                ));
            }
            Ok(Some(format!(
                "check: {} critical, {}",
                rep.summary.critical,
                crate::plural(rep.summary.warning, "warning")
            )))
        }
        "restore" => {
            let what = match arg(step, vars, "what")?.as_deref() {
                Some("caps") => app::What::Caps,
                Some("pam") => app::What::Pam,
                _ => app::What::Vanished,
            };
            // `from` names the walk's own snapshot: a package manager's hook
            // may have taken a newer `pre` since, one that already lacks what
            // the failed upgrade deleted (DESIGN §5).
            let from = arg(step, vars, "from")?;
            // As the snapshot step: wait for the lock, bounded.
            let store = app
                .store_write_waiting(&format!("restore (step {})", step.id), step_lock_wait())
                .map_err(fail)?;
            let (_, applied) =
                app::restore_in(app, &store, from.as_deref(), what, false).map_err(fail)?;
            match applied {
                None => Ok(Some("nothing to restore".into())),
                Some(a) => {
                    if let Some((p, e)) = a.failed {
                        return Err(Failure(format!("restore stopped at {p}: {e}")));
                    }
                    if let Some(sig) = a.interrupted {
                        return Err(Failure(format!(
                            "interrupted by {sig}; restored {} (the whole plan)",
                            a.restored.join(" ")
                        )));
                    }
                    if !a.refused.is_empty() {
                        let what: Vec<String> =
                            a.refused.iter().map(|(p, e)| format!("{p}: {e}")).collect();
                        return Err(Failure(format!(
                            "restored {}; not restored: {}",
                            a.restored.join(" "),
                            what.join("; ")
                        )));
                    }
                    if !a.incomplete.is_empty() {
                        let what: Vec<String> = a
                            .incomplete
                            .iter()
                            .map(|(p, e)| format!("{p}: {e}"))
                            .collect();
                        return Err(Failure(format!(
                            "restored {}, but not all of it: {}",
                            a.restored.join(" "),
                            what.join("; ")
                        )));
                    }
                    Ok(Some(format!("restored {}", a.restored.join(" "))))
                }
            }
        }
        "vm-clone" => {
            let mut argv = vec![
                app::guard_vm_path().display().to_string(),
                "--store".into(),
                app.store_dir.display().to_string(),
                "clone".into(),
                need(step, vars, "domain")?,
            ];
            if let Some(n) = arg(step, vars, "name")? {
                argv.extend(["--name".into(), n]);
            }
            if let Some(d) = arg(step, vars, "disk-target")? {
                argv.extend(["--disk-target".into(), d]);
            }
            if let Some(c) = arg(step, vars, "connect")? {
                argv.extend(["--connect".into(), c]);
            }
            let code = run_cmd(app, argv, None, false, cmds)?;
            if code != 0 {
                return Err(Failure(format!("guard vm clone exited {code}")));
            }
            Ok(None)
        }
        "keyring-populate" => {
            // What `pacman-key --populate` does, from the root's own keyring
            // files: Debian's pacman-key only reads /usr/share/keyrings, and a
            // keyring package's scriptlet may not have run (bare chroot).
            let root = app.root.path();
            let dir = root.join("usr/share/pacman/keyrings");
            let gpgdir = root.join("etc/pacman.d/gnupg");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| Failure(format!("cannot read {}: {e}", dir.display())))?
                .flatten()
                .map(|e| e.path())
                .collect();
            files.sort();
            let pk = |rest: Vec<String>| {
                let mut v = vec![
                    "pacman-key".to_string(),
                    "--gpgdir".into(),
                    gpgdir.display().to_string(),
                ];
                v.extend(rest);
                v
            };
            let mut n = 0;
            for f in files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "gpg"))
            {
                let code = run_cmd(
                    app,
                    pk(vec!["--add".into(), f.display().to_string()]),
                    None,
                    false,
                    cmds,
                )?;
                if code != 0 {
                    return Err(Failure(format!("importing {} failed", f.display())));
                }
            }
            for f in files
                .iter()
                .filter(|f| f.to_string_lossy().ends_with("-trusted"))
            {
                let text = std::fs::read_to_string(f).map_err(|e| Failure(e.to_string()))?;
                for line in text.lines() {
                    let fpr = line.split(':').next().unwrap_or("").trim();
                    if fpr.is_empty() || !fpr.bytes().all(|b| b.is_ascii_hexdigit()) {
                        continue;
                    }
                    let code = run_cmd(
                        app,
                        pk(vec!["--lsign-key".into(), fpr.into()]),
                        None,
                        false,
                        cmds,
                    )?;
                    if code != 0 {
                        return Err(Failure(format!("locally signing {fpr} failed")));
                    }
                    n += 1;
                }
            }
            let gpg = |rest: &[&str]| {
                let mut v = vec![
                    "gpg".to_string(),
                    "--homedir".into(),
                    gpgdir.display().to_string(),
                    "--no-permission-warning".into(),
                    "--batch".into(),
                    "--quiet".into(),
                ];
                v.extend(rest.iter().map(|s| s.to_string()));
                v
            };
            let mut revoked = 0;
            for f in &files {
                let fs = f.to_string_lossy();
                if fs.ends_with("-trusted") {
                    let code = run_cmd(app, gpg(&["--import-ownertrust", &fs]), None, false, cmds)?;
                    if code != 0 {
                        return Err(Failure(format!("importing owner trust from {fs} failed")));
                    }
                }
                if !fs.ends_with("-revoked") {
                    continue;
                }
                let text = std::fs::read_to_string(f).map_err(|e| Failure(e.to_string()))?;
                for fpr in text.lines().map(str::trim) {
                    if fpr.is_empty() || !fpr.bytes().all(|b| b.is_ascii_hexdigit()) {
                        continue;
                    }
                    // As pacman-key --populate: disable, so nothing it signed
                    // verifies any more.
                    let code = run_cmd(
                        app,
                        gpg(&[
                            "--command-fd",
                            "0",
                            "--no-auto-check-trustdb",
                            "--edit-key",
                            fpr,
                        ]),
                        Some("disable\nquit\n"),
                        false,
                        cmds,
                    )?;
                    if code != 0 {
                        return Err(Failure(format!("disabling revoked key {fpr} failed")));
                    }
                    revoked += 1;
                }
            }
            Ok(Some(format!(
                "{} trusted, {} disabled",
                crate::plural(n, "key"),
                crate::plural(revoked, "revoked key")
            )))
        }
        "luks-target-check" => {
            let source = need(step, vars, "source")?;
            let target = arg(step, vars, "target")?.unwrap_or_default();
            let header: u64 = arg(step, vars, "header-mib")?
                .unwrap_or_else(|| "16".into())
                .parse()
                .map_err(|_| Failure("header-mib is not a number".into()))?;
            let ss = size_of(&source).map_err(fail)?;
            let needed = ss + (header << 20);
            for (k, v) in [
                ("source_bytes", ss.to_string()),
                ("needed_mib", needed.div_ceil(1 << 20).to_string()),
            ] {
                set_builtin_var(vars, set, k, v);
            }
            if target.is_empty() {
                return Ok(Some(format!(
                    "the target needs {} MiB",
                    needed.div_ceil(1 << 20)
                )));
            }
            let ts = size_of(&target).map_err(fail)?;
            if ts < needed {
                return Err(Failure(format!(
                    "target {target} is too small: {ts} bytes, but the source {source} ({ss} bytes) plus the LUKS header ({header} MiB) needs {needed}"
                )));
            }
            let out = exec::output(&Cmd::new("blkid").args(["-p", "-o", "export", &target]))
                .map_err(fail)?;
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(t) = text.lines().find_map(|l| l.strip_prefix("TYPE=")) {
                return Err(Failure(format!(
                    "target {target} carries a {t} signature: refusing to format something that is in use; if it really is unused, wipe it yourself (wipefs -a {target})"
                )));
            }
            // A guest's whole disk has a partition table and no filesystem
            // at its start: blkid reports PTTYPE, not TYPE. Another guest's
            // volume (or the source itself) must not pass as "empty".
            if let Some(t) = text.lines().find_map(|l| l.strip_prefix("PTTYPE=")) {
                return Err(Failure(format!(
                    "target {target} carries a {t} partition table: it is probably another guest's disk; refusing to format it; if it really is unused, wipe it yourself (wipefs -a {target})"
                )));
            }
            Ok(Some(format!(
                "target {target}: {ts} bytes, needs {needed}; no filesystem on it"
            )))
        }
        "luks-header-backup" => {
            let device = need(step, vars, "device")?;
            let name = need(step, vars, "name")?;
            // made as the store makes its directories: 0700, and a
            // symlink in its place refused rather than followed
            let dir = app.store_dir.join("luks");
            app.store_write_waiting("keep the LUKS header backup", LOCK_WAIT)
                .and_then(|s| s.make_dir("luks"))
                .map_err(|e| Failure(format!("{e:#}")))?;
            let stamp = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            let file = dir.join(format!("{name}-header-{stamp}.img"));
            let argv = vec![
                "cryptsetup".to_string(),
                "luksHeaderBackup".into(),
                device.clone(),
                "--header-backup-file".into(),
                file.display().to_string(),
            ];
            let code = run_cmd(app, argv, None, false, cmds)?;
            if code != 0 {
                return Err(Failure(format!(
                    "cryptsetup luksHeaderBackup exited {code}"
                )));
            }
            let f = file.display().to_string();
            set_builtin_var(vars, set, "luks_header_backup", f.clone());
            Ok(Some(format!("header of {device} saved to {f}")))
        }
        other => Err(Failure(format!("unknown builtin {other}"))),
    }
}
