//! Playbooks: step-by-step, resumable walks through upgrades and migrations.
//! This file owns finding playbooks (built in, then ROOT/etc/guard/playbooks)
//! and the three commands; `model` is the format, `engine` the walk, and
//! what the walk reads and writes besides has a file each: `facts`,
//! `vars` (substitution, conditions, who may set what), `journal` and
//! `script` (the dry run).

pub mod engine;
mod facts;
mod journal;
pub mod model;
mod script;
mod vars;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::sysroot::SysPath;
pub use model::Playbook;

/// An answers file (DESIGN §5): `[answers]` and `confirm = ["STEP:TARGET"]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    #[serde(default)]
    pub answers: BTreeMap<String, String>,
    #[serde(default)]
    pub confirm: Vec<String>,
}

impl Answers {
    pub fn load(p: &Path) -> Result<Answers> {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read answers file {}", p.display()))?;
        // What it may not set (root, snapshot_id) is refused where answers
        // join the variables (`engine::refuse_reserved`), which checks the
        // journal's answers on --resume too.
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("answers file {}: {}", p.display(), e.message()))
    }
}

/// The playbooks shipped inside the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "arch-upgrade",
        include_str!("../../playbooks/arch-upgrade.toml"),
    ),
    (
        "leap-upgrade",
        include_str!("../../playbooks/leap-upgrade.toml"),
    ),
    (
        "luks-guest-move",
        include_str!("../../playbooks/luks-guest-move.toml"),
    ),
    (
        "debian-upgrade",
        include_str!("../../playbooks/debian-upgrade.toml"),
    ),
];

/// Where a built-in playbook comes from, as `list` says it.
const BUILT_IN: &str = "built in";

/// A playbook file in ROOT/etc/guard/playbooks that does not parse: its
/// path, the names it may go by, and why.
pub struct Broken {
    pub path: String,
    /// The `id` it seems to set (found even when the TOML as a whole does
    /// not parse), and its file name without `.toml`: a walk of either
    /// name is refused, never quietly given a built-in of that name.
    pub names: Vec<String>,
    pub error: String,
}

/// The playbooks guard can read, with where each came from, and the files
/// it cannot.
pub struct Found {
    pub playbooks: Vec<(Playbook, String)>,
    pub broken: Vec<Broken>,
}

/// The `id` a playbook file that does not parse seems to set: from the
/// TOML when only the playbook's shape is wrong, else from a top-level
/// `id = "…"` line.
fn claimed_id(text: &str) -> Option<String> {
    if let Ok(t) = toml::from_str::<toml::Table>(text) {
        return t.get("id")?.as_str().map(str::to_string);
    }
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "id").then(|| v.trim().trim_matches(['"', '\'']).to_string())
        })
        .filter(|id| !id.is_empty())
}

/// Every playbook with where it came from; files in
/// ROOT/etc/guard/playbooks override built-in ones of the same id. A file
/// there that does not parse is set aside with its error (DESIGN §3: a
/// per-file error is reported, it does not abort the run): it must not
/// keep the admin from listing or walking the others.
pub fn all(app: &App) -> Result<Found> {
    let mut out: BTreeMap<String, (Playbook, String)> = BTreeMap::new();
    for (name, text) in BUILTIN {
        let pb = Playbook::parse(text, name)?;
        out.insert(pb.id.clone(), (pb, BUILT_IN.into()));
    }
    let mut broken = Vec::new();
    let dir = SysPath::new("/etc/guard/playbooks");
    for name in app.root.list_dir(&dir) {
        let Some(stem) = name.strip_suffix(b".toml") else {
            continue;
        };
        let p = dir.join(&name);
        let Some(text) = app.root.read_text(p.clone()) else {
            continue;
        };
        match Playbook::parse(&text, &p.lossy()) {
            Ok(pb) => {
                out.insert(pb.id.clone(), (pb, p.lossy()));
            }
            Err(e) => {
                let mut names: Vec<String> = claimed_id(&text).into_iter().collect();
                let stem = String::from_utf8_lossy(stem).into_owned();
                if !names.contains(&stem) {
                    names.push(stem);
                }
                broken.push(Broken {
                    path: p.lossy(),
                    names,
                    error: format!("{e:#}"),
                });
            }
        }
    }
    Ok(Found {
        playbooks: out.into_values().collect(),
        broken,
    })
}

/// The playbook `name` and, when it is a file of the root's
/// (`/etc/guard/playbooks/…`) rather than built in, that file.
pub fn find(app: &App, name: &str) -> Result<(Playbook, Option<String>)> {
    let Found { playbooks, broken } = all(app)?;
    // Fail closed: a broken file that may be this playbook (an override of
    // a built-in one, say) is never replaced by another of the name.
    if let Some(b) = broken.iter().find(|b| b.names.iter().any(|n| n == name)) {
        bail!("{}; fix or remove {} to use {name}", b.error, b.path);
    }
    for b in &broken {
        app.ui.say(&format!("warning: {} (set aside)", b.error));
    }
    let ids: Vec<String> = playbooks.iter().map(|(p, _)| p.id.clone()).collect();
    match playbooks.into_iter().find(|(p, _)| p.id == name) {
        Some((p, from)) => Ok((p, (from != BUILT_IN).then_some(from))),
        None => bail!("no playbook {name} (known: {})", ids.join(", ")),
    }
}

pub fn cmd_list(app: &App) -> Result<i32> {
    let Found { playbooks, broken } = all(app)?;
    if app.json {
        let rows = playbooks
            .iter()
            .map(|(p, from)| json!({"id": p.id, "title": p.title, "applies_to": p.applies_to, "steps": p.steps.len(), "source": from}))
            .chain(broken.iter().map(|b| json!({"id": b.names.first(), "source": b.path, "error": b.error})))
            .collect::<Vec<_>>();
        app.print_json(&json!(rows))?;
    } else {
        for (p, from) in &playbooks {
            crate::out!(
                "{:<18} {} ({}; {from})",
                p.id,
                p.title,
                crate::plural(p.steps.len(), "step")
            );
        }
        for b in &broken {
            crate::out!(
                "{:<18} BROKEN: {}",
                b.names.first().map_or("?", String::as_str),
                b.error
            );
        }
    }
    if broken.is_empty() {
        return Ok(0);
    }
    let paths: Vec<&str> = broken.iter().map(|b| b.path.as_str()).collect();
    crate::app::failed_after_output(
        app,
        format!(
            "{} set aside (they do not parse): {}",
            crate::plural(broken.len(), "playbook file"),
            paths.join(", ")
        ),
    )
}

pub fn cmd_show(app: &App, name: &str) -> Result<i32> {
    let (pb, _) = find(app, name)?;
    if app.json {
        // the playbook's TOML keys are kebab-case; JSON keys are snake_case
        // (DESIGN §2), so `applies-to` is shown as `applies_to`
        app.print_json(&snake_keys(serde_json::to_value(&pb)?))?;
        return Ok(0);
    }
    crate::out!("{}: {}", pb.id, pb.title);
    if !pb.description.is_empty() {
        crate::out!("{}", pb.description.trim());
    }
    let vars = pb.vars.clone();
    for (n, s) in pb.steps.iter().enumerate() {
        crate::out_raw!(
            "{}",
            engine::render_step(s, &vars, n, pb.steps.len(), app.root.path(), &app.store_dir)
        );
    }
    Ok(0)
}

pub fn cmd_run(
    app: &App,
    name: &str,
    dry_run: bool,
    resume: bool,
    answers_file: Option<&Path>,
) -> Result<i32> {
    let (pb, from_root) = find(app, name)?;
    let answers = match answers_file {
        Some(p) => Answers::load(p)?.answers,
        None => BTreeMap::new(),
    };
    if dry_run {
        // Checked as the walk checks it: the script would show the preset
        // value.
        if let Some(p) = answers_file {
            engine::refuse_reserved(&answers, &format!("answers file {}", p.display()), true)?;
        }
        let mut vars = pb.vars.clone();
        vars.extend(engine::detect_facts(app, &answers));
        // The dry run of a resume shows the rest of the walk as the resume
        // would see it: the journal's answers (under this answers file's),
        // and what becomes of each step it recorded.
        let journal = if resume {
            let j = engine::resumable_journal(app, &pb.id)?;
            engine::refuse_changed_answers(&pb, &j, &answers)?;
            vars.extend(j.answers.clone());
            Some(j)
        } else {
            None
        };
        vars.extend(answers);
        let script = engine::render_script(
            &pb,
            &vars,
            app.root.path(),
            &app.store_dir,
            journal.as_ref(),
        );
        if app.json {
            app.print_json(&json!({ "playbook": pb.id, "dry_run": true, "script": script }))?;
        } else {
            crate::out_raw!("{script}");
        }
        return Ok(0);
    }
    engine::walk(
        app,
        &pb,
        &engine::RunOpts {
            resume,
            answers,
            answers_file,
            from_root: from_root.as_deref(),
        },
    )
}

/// `v` with every object key's `-` turned into `_`.
fn snake_keys(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.replace('-', "_"), snake_keys(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(snake_keys).collect()),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under playbooks/ parses and validates (DESIGN §3).
    #[test]
    fn every_shipped_playbook_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            let pb = Playbook::parse(&text, &p.display().to_string()).unwrap();
            assert_eq!(
                p.file_stem().unwrap().to_str().unwrap(),
                pb.id,
                "file name and id differ"
            );
            assert!(
                BUILTIN.iter().any(|(id, _)| *id == pb.id),
                "{} is not built in",
                pb.id
            );
            n += 1;
        }
        assert_eq!(n, BUILTIN.len());
    }

    /// A playbook that takes its own snapshot compares with it: the default
    /// baseline may be a newer hook snapshot taken after the damage.
    #[test]
    fn check_and_restore_use_the_walks_own_snapshot() {
        for (id, text) in BUILTIN {
            let pb = Playbook::parse(text, id).unwrap();
            if !pb
                .steps
                .iter()
                .any(|s| s.builtin.as_deref() == Some("snapshot"))
            {
                continue;
            }
            for s in &pb.steps {
                let key = match s.builtin.as_deref() {
                    Some("check") => "against",
                    Some("restore") => "from",
                    _ => continue,
                };
                assert!(
                    s.with.get(key).is_some_and(|v| v.contains("{snapshot_id}")),
                    "{id}: step {} compares with the default baseline",
                    s.id
                );
            }
        }
    }

    #[test]
    fn noconfirm_never_appears() {
        for (id, text) in BUILTIN {
            assert!(!text.contains("--noconfirm"), "{id} answers pacman blindly");
            assert!(
                !text.contains("--non-interactive"),
                "{id} answers zypper blindly"
            );
        }
    }
}
