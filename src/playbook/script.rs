//! How a walk reads to the person: the dry run's reviewable script, and the
//! descriptions the walk prints too (a step's explanation, a `done-if`
//! test, a command, the `guard run` that resumes it). Apart from the walk
//! because the dry run renders every step and runs none.

use std::path::Path;

use super::journal::Journal;
use super::model::{Playbook, Step, Test};
use super::vars::{check_rootable, rooted, subst, subst_argv, Vars};
use crate::exec::{self, Cmd};

pub(super) fn describe_test(t: &Test, vars: &Vars, root: &Path) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &t.cond {
        parts.push(c.clone());
    }
    if let Some(r) = &t.run {
        let argv = rooted(subst_argv(r, vars, true).unwrap_or_default(), root);
        let mut s = display(&argv);
        if let Some(o) = &t.output {
            let o = subst(o, vars, true)
                .ok()
                .flatten()
                .unwrap_or_else(|| o.clone());
            s.push_str(&format!(" (output contains {o:?})"));
        }
        if let Some(code) = t.status {
            s.push_str(&format!(" exits {code}"));
        }
        parts.push(s);
    }
    parts.join(" and ")
}

/// `guard run ID`, as the walk's own hints say it: with a `--root` other
/// than `/` or a store of its own, pasted bare it would walk (or look for a
/// journal in) the host's default store and root, not this walk's.
pub(super) fn guard_run(root: &Path, store: &Path, id: &str) -> String {
    format!(
        "{} run {}",
        crate::app::guard_invocation(root, store),
        exec::shell_quote(id.as_bytes())
    )
}

fn display(argv: &[String]) -> String {
    if argv.is_empty() {
        return String::new();
    }
    Cmd::new(&argv[0]).args(&argv[1..]).display()
}

/// The explanation with what is known filled in.
pub(super) fn explain(step: &Step, vars: &Vars) -> String {
    fill(&step.explain, vars)
}

/// A text for the person (`explain`, `on-failure`) with what is known
/// filled in and the rest as `<name>`: advice that says "{target_release}"
/// names nothing the admin can act on.
pub(super) fn fill(text: &str, vars: &Vars) -> String {
    subst(text, vars, true)
        .ok()
        .flatten()
        .unwrap_or_else(|| text.to_string())
}

fn comment(out: &mut String, text: &str) {
    for l in text.trim().lines() {
        out.push_str("# ");
        out.push_str(l.trim_end());
        out.push('\n');
    }
}

/// One step as script lines.
pub fn render_step(
    step: &Step,
    vars: &Vars,
    n: usize,
    total: usize,
    root: &Path,
    store: &Path,
) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "\n# ---- step {}/{total}: {} ({})\n",
        n + 1,
        step.title,
        step.id
    ));
    comment(&mut o, &explain(step, vars));
    if let Some(w) = &step.when {
        o.push_str(&format!(
            "# only when: {}{}\n",
            step.when_text.as_deref().unwrap_or(w),
            if step.when_text.is_some() {
                format!(" ({w})")
            } else {
                String::new()
            }
        ));
    }
    if let Some(t) = &step.done_if {
        o.push_str(&format!(
            "# skipped when already done: {}\n",
            describe_test(t, vars, root)
        ));
    }
    if let Some(d) = &step.destructive {
        let t = subst(&d.target, vars, true)
            .ok()
            .flatten()
            .unwrap_or_default();
        o.push_str(&format!(
            "# DESTRUCTIVE: {} — guard asks you to type {t} (or an answers file with confirm = [\"{}:{t}\"])\n",
            subst(&d.what, vars, true).ok().flatten().unwrap_or_default(),
            step.id
        ));
    }
    let dry = |argv: &[String]| match subst_argv(argv, vars, true) {
        Ok(a) => display(&rooted(a, root)),
        Err(e) => format!("# (cannot render: {e})"),
    };
    if let Some(r) = &step.run {
        if let Some(p) = &step.probe {
            o.push_str(&format!(
                "# probe: sets {}=yes when the output contains {}\n",
                p.fact,
                p.patterns
                    .iter()
                    .map(|p| format!("{p:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
        if let Some(f) = &step.feed {
            o.push_str(&format!(
                "# without a terminal guard answers {f:?} to the command's first question only; it reads end-of-input at any later one, which pacman and zypper take as no\n"
            ));
        }
        if let Err(e) = subst_argv(r, vars, true).and_then(|a| check_rootable(&a, root)) {
            o.push_str(&format!("# REFUSED on this root: {e}\n"));
        }
        let line = dry(r);
        if step.probe.is_some() {
            o.push_str(&format!("{line} || true\n"));
        } else {
            o.push_str(&line);
            o.push('\n');
        }
    }
    if let Some(a) = &step.ask {
        let cur = vars
            .get(&a.var)
            .cloned()
            .unwrap_or_else(|| format!("<{}>", a.var));
        o.push_str(&format!("# question {}: {}", a.var, a.prompt));
        if !a.choices.is_empty() {
            o.push_str(&format!(" [{}]", a.choices.join(" / ")));
        }
        o.push('\n');
        o.push_str(&format!(
            "{}={}\n",
            a.var,
            exec::shell_quote(cur.as_bytes())
        ));
    }
    if let Some(m) = &step.manual {
        o.push_str("# manual step, confirm when done:\n");
        comment(
            &mut o,
            &subst(m, vars, true).ok().flatten().unwrap_or_default(),
        );
    }
    if let Some(b) = &step.builtin {
        let w = |k: &str| {
            step.with
                .get(k)
                .map(|v| subst(v, vars, true).ok().flatten().unwrap_or_default())
        };
        let g = |rest: Vec<String>| {
            // the store too: a line pasted by hand must reach the store the
            // walk uses, not the default one under --root
            let mut v = vec![
                "guard".to_string(),
                "--root".into(),
                root.display().to_string(),
                "--store".into(),
                store.display().to_string(),
            ];
            v.extend(rest);
            display(&v)
        };
        let line = match b.as_str() {
            "snapshot" => g(vec![
                "snapshot".into(),
                "--kind".into(),
                w("kind").unwrap_or_else(|| "pre".into()),
                "--label".into(),
                w("label").unwrap_or_default(),
            ]),
            "check" => {
                let mut v = vec!["check".to_string()];
                if let Some(a) = w("against").filter(|a| !a.is_empty()) {
                    v.extend(["--against".into(), a]);
                }
                g(v)
            }
            "restore" => {
                let mut v = vec![
                    "restore".to_string(),
                    format!("--{}", w("what").unwrap_or_else(|| "vanished".into())),
                ];
                if let Some(f) = w("from").filter(|f| !f.is_empty()) {
                    v.extend(["--from".into(), f]);
                }
                g(v)
            }
            "vm-clone" => {
                let mut v = vec![
                    "vm".to_string(),
                    "clone".into(),
                    w("domain").unwrap_or_else(|| "<domain>".into()),
                ];
                for (k, f) in [
                    ("name", "--name"),
                    ("disk-target", "--disk-target"),
                    ("connect", "--connect"),
                ] {
                    if let Some(x) = w(k) {
                        v.extend([f.to_string(), x]);
                    }
                }
                g(v)
            }
            "keyring-populate" => {
                let gd = root.join("etc/pacman.d/gnupg").display().to_string();
                let kd = root.join("usr/share/pacman/keyrings").display().to_string();
                format!(
                    "# builtin: import {kd}/*.gpg and locally sign every key in {kd}/*-trusted\n\
                     pacman-key --gpgdir {gd} --add {kd}/*.gpg\n\
                     # for each FPR in *-trusted:\n# pacman-key --gpgdir {gd} --lsign-key FPR",
                    gd = exec::shell_quote(gd.as_bytes()),
                    kd = exec::shell_quote(kd.as_bytes()),
                )
            }
            "luks-target-check" => {
                let s = w("source").unwrap_or_default();
                let h = w("header-mib").unwrap_or_else(|| "16".into());
                match w("target") {
                    None => format!(
                        "# builtin: needed_mib = size of {s} + {h} MiB\nblockdev --getsize64 {s}"
                    ),
                    Some(t) => format!(
                        "# builtin: refuse unless {t} holds {s} plus a {h} MiB LUKS header, and carries no filesystem\n\
                         blockdev --getsize64 {s}; blockdev --getsize64 {t}\n\
                         ! blkid -p {t}"
                    ),
                }
            }
            "luks-header-backup" => format!(
                "cryptsetup luksHeaderBackup {} --header-backup-file {}",
                w("device").unwrap_or_default(),
                exec::shell_quote(
                    format!(
                        "{}/luks/{}-header-<time>.img",
                        vars.get("store").map(String::as_str).unwrap_or("<store>"),
                        w("name").unwrap_or_default()
                    )
                    .as_bytes()
                )
            ),
            other => format!("# unknown builtin {other}"),
        };
        o.push_str(&line);
        o.push('\n');
    }
    if let Some(t) = &step.verify {
        o.push_str(&format!("# verify: {}\n", describe_test(t, vars, root)));
    }
    if let Some(f) = &step.on_failure {
        o.push_str("# on failure the walk stops:\n");
        comment(&mut o, &fill(f, vars));
    }
    o
}

/// The whole walk as a reviewable shell script; never fails for lack of a
/// fact (unknown ones are `<placeholders>`).
/// The dry run's script. `recorded`: the steps an unfinished walk's
/// journal holds, when the dry run is of its `--resume`; each says what the
/// resume will do with it.
pub fn render_script(
    pb: &Playbook,
    vars: &Vars,
    root: &Path,
    store: &Path,
    recorded: Option<&Journal>,
) -> String {
    let mut o = String::new();
    o.push_str("#!/bin/sh\n");
    o.push_str(&format!("# guard playbook {}: {}\n", pb.id, pb.title));
    o.push_str(&format!(
        "# dry run: nothing was changed. Review, then: {}{}\n",
        guard_run(root, store, &pb.id),
        if recorded.is_some() { " --resume" } else { "" }
    ));
    comment(&mut o, &pb.description);
    o.push_str("# facts and answers:\n");
    for (k, v) in vars {
        // (an empty value said as such: `k = ` would end the line in a
        // space and read as if the value were cut off)
        if v.is_empty() {
            o.push_str(&format!("#   {k} = (empty)\n"));
        } else {
            o.push_str(&format!("#   {k} = {v}\n"));
        }
    }
    o.push_str("# unknown facts and answers appear as <name>\n");
    if let Some(j) = recorded {
        o.push_str(&format!(
            "# resuming the walk started {} ({} recorded)\n",
            j.started,
            crate::plural(j.steps.len(), "step")
        ));
    }
    o.push_str("set -eu\n");
    for (n, s) in pb.steps.iter().enumerate() {
        let step = render_step(s, vars, n, pb.steps.len(), root, store);
        let Some(r) = recorded.and_then(|j| j.steps.iter().find(|r| r.id == s.id)) else {
            o.push_str(&step);
            continue;
        };
        // The step's header line, then what the resume does with it.
        let (head, rest) = step
            .trim_start_matches('\n')
            .split_once('\n')
            .unwrap_or((&step, ""));
        o.push_str(&format!("\n{head}\n"));
        // A note can span lines (a restored path may hold a newline): each
        // line stays a comment, or the script would run it.
        let note = r
            .note
            .as_deref()
            .map(|n| format!(": {}", n.replace('\n', "\n#   ")))
            .unwrap_or_default();
        match r.status.as_str() {
            "failed" => {
                o.push_str(&format!(
                    "# FAILED last time ({}){note}; the resume asks whether to retry it (answers file: retry-{} = \"retry\" under [answers])\n",
                    r.ended, s.id
                ));
                o.push_str(rest);
            }
            status => {
                o.push_str(&format!("# recorded {status} ({}){note}: ", r.ended));
                if status != "skipped" && s.done_if.is_some() {
                    o.push_str("not run again unless its check no longer holds\n");
                } else {
                    o.push_str("not run again\n");
                }
                for line in rest.lines() {
                    o.push_str(&format!("#   {line}\n"));
                }
            }
        }
    }
    o
}
