//! `guard push [ID] --to REPO`: copies snapshots (the snapshot file and every
//! object it names) to a restic repository off the host, one restic snapshot
//! per guard snapshot, tagged `guard:ID`. Meant for an append-only remote
//! (`rclone serve restic --append-only`, rest-server `--append-only`): the
//! host can add, never delete (DESIGN §1, incident 7). restic's own
//! environment (RESTIC_PASSWORD_FILE, …) passes through.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::exec::{self, Cmd};

/// The tag naming the guard snapshot a restic snapshot holds.
pub fn tag(id: &str) -> String {
    format!("guard:{id}")
}

#[derive(Deserialize)]
struct ResticSnapshot {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The guard snapshot ids the repository already holds.
fn pushed(repo: &str) -> Result<BTreeSet<String>> {
    let out = exec::stdout_of(&Cmd::new("restic").args([
        "--no-lock",
        "-r",
        repo,
        "snapshots",
        "--json",
        "--tag",
        "guard",
    ]))?;
    let snaps: Vec<ResticSnapshot> = serde_json::from_slice(&out)
        .map_err(|e| anyhow!("cannot read restic's snapshot list: {e}"))?;
    Ok(snaps
        .into_iter()
        .flat_map(|s| s.tags.unwrap_or_default())
        .filter_map(|t| t.strip_prefix("guard:").map(str::to_string))
        .collect())
}

pub fn command(app: &App, id: Option<&str>, to: &str) -> Result<i32> {
    let store = app.store_read()?;
    let ids = match id {
        Some(i) => vec![store.resolve(i)?],
        None => store.ids()?,
    };
    if ids.is_empty() {
        bail!("no snapshots to push: guard snapshot first");
    }
    let dir = std::fs::canonicalize(store.dir())
        .with_context(|| format!("cannot open store {}", store.dir().display()))?;
    let there = pushed(to)?;
    let (skip, todo): (Vec<String>, Vec<String>) = ids.into_iter().partition(|i| there.contains(i));
    for i in &skip {
        app.ui.say(&format!("  skip  {i} (already in {to})"));
    }
    // Plan first: every file each snapshot needs must exist, or the copy
    // off the host would be a snapshot that cannot be restored.
    let mut plan: Vec<(String, Vec<std::path::PathBuf>)> = Vec::new();
    for i in &todo {
        let m = store.load(i)?;
        let mut files = vec![dir.join("snapshots").join(format!("{i}.json"))];
        for h in m.objects().keys() {
            let p = dir.join("objects").join(&h[..2]).join(&h[2..]);
            if !p.is_file() {
                bail!("snapshot {i} needs object {h}, which is missing; run guard verify");
            }
            files.push(p);
        }
        app.ui
            .say(&format!("  push  {i} ({} files) to {to}", files.len()));
        plan.push((i.clone(), files));
    }
    if !plan.is_empty()
        && !app
            .ui
            .confirm(&format!("push {} snapshot(s)?", plan.len()))?
    {
        bail!("nothing pushed");
    }
    for (i, files) in &plan {
        let mut list = Vec::new();
        for f in files {
            list.extend_from_slice(f.as_os_str().as_bytes());
            list.push(0);
        }
        let args: Vec<OsString> = [
            "-r",
            to,
            "backup",
            "--files-from-raw",
            "-",
            "--tag",
            "guard",
            "--tag",
            &tag(i),
        ]
        .iter()
        .map(OsString::from)
        .collect();
        exec::stdout_of(&Cmd::new("restic").args(args).stdin_bytes(list))
            .with_context(|| format!("pushing snapshot {i} failed"))?;
        if !app.json {
            crate::out!("pushed {i}");
        }
    }
    if app.json {
        app.print_json(&json!({
            "repository": to,
            "pushed": plan.iter().map(|(i, f)| json!({"id": i, "files": f.len()})).collect::<Vec<_>>(),
            "skipped": skip,
        }))?;
    } else if plan.is_empty() {
        crate::out!(
            "nothing new to push; {} snapshot(s) already there",
            skip.len()
        );
    }
    Ok(0)
}
