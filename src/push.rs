//! `guard push [ID] --to REPO`: copies snapshots (the snapshot file and every
//! object it names) to a restic repository off the host, one restic snapshot
//! per guard snapshot, tagged `guard:ID`. Meant for an append-only remote
//! (`rclone serve restic --append-only`, rest-server `--append-only`): the
//! host can add, never delete (DESIGN §1, incident 7), so push only ever runs
//! `snapshots`, `find` and `backup`. restic's own environment
//! (RESTIC_PASSWORD_FILE, …) passes through.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::exec::{self, Cmd};
use crate::store::Store;

/// The tag naming the guard snapshot a restic snapshot holds.
pub fn tag(id: &str) -> String {
    format!("guard:{id}")
}

/// The repository as guard shows it: a password in its URL
/// (`rest:https://user:PASSWORD@host/`, which is how restic 0.14 is given
/// rest-server's basic auth) becomes `***`, as restic itself writes it.
/// Messages and `--json` end up in journals and CI logs.
pub fn shown(repo: &str) -> String {
    let Some(start) = repo.find("://").map(|i| i + 3) else {
        return repo.to_string();
    };
    let rest = &repo[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return repo.to_string();
    };
    match authority[..at].find(':') {
        Some(c) => format!("{}{}:***{}", &repo[..start], &rest[..c], &rest[at..]),
        None => repo.to_string(),
    }
}

/// restic, told the repository through its environment rather than `-r`:
/// the URL may carry a password, and a process's arguments are readable by
/// every user (/proc/PID/cmdline) for as long as a backup runs. An inherited
/// RESTIC_REPOSITORY_FILE would contradict `--to` (restic refuses both), so
/// it is not passed on.
fn restic(to: &str) -> Cmd {
    Cmd::new("restic")
        .env_remove("RESTIC_REPOSITORY_FILE")
        .env("RESTIC_REPOSITORY", to)
}

/// Why restic failed, on one line: its status and its own reason (the
/// `Fatal:` line, else the first `error:` line, else its last line), never
/// the password of the URL. restic writes retries and hints on further
/// lines, which would split guard's one error line.
fn reason(out: &Output, to: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .find(|l| l.starts_with("Fatal:"))
        .or_else(|| lines.iter().find(|l| l.starts_with("error:")))
        .or(lines.last())
        .copied();
    let status = match (out.status.code(), out.status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => out.status.to_string(),
    };
    match line {
        Some(l) if !to.is_empty() => format!("restic {status}: {}", l.replace(to, &shown(to))),
        Some(l) => format!("restic {status}: {l}"),
        None => format!("restic {status}"),
    }
}

/// Runs restic to completion; a failure is one line saying what was being
/// done and why restic gave up.
fn run(cmd: &Cmd, to: &str, what: &str) -> Result<Vec<u8>> {
    let out = exec::output(cmd).with_context(|| what.to_string())?;
    if !out.status.success() {
        bail!("{what}: {}", reason(&out, to));
    }
    Ok(out.stdout)
}

#[derive(Deserialize)]
struct ResticSnapshot {
    id: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The restic snapshots that say they hold a guard snapshot, by guard id.
/// A tag is only a claim: a backup that could not read every file still
/// leaves a snapshot with its tags (restic exits 3), so [`listed`] decides.
fn tagged(to: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let out = run(
        &restic(to).args(["--no-lock", "snapshots", "--json", "--tag", "guard"]),
        to,
        &format!("cannot list the snapshots in {}", shown(to)),
    )?;
    let snaps: Vec<ResticSnapshot> = serde_json::from_slice(&out)
        .map_err(|e| anyhow!("cannot read restic's snapshot list: {e}"))?;
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in snaps {
        for t in s.tags.unwrap_or_default() {
            if let Some(g) = t.strip_prefix("guard:") {
                by_id.entry(g.to_string()).or_default().push(s.id.clone());
            }
        }
    }
    Ok(by_id)
}

#[derive(Deserialize)]
struct FindHits {
    snapshot: String,
    #[serde(default)]
    matches: Vec<FindMatch>,
}

#[derive(Deserialize)]
struct FindMatch {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    size: u64,
}

/// The regular files (path → size) each of `snaps` holds. One `restic find`
/// for all of them: every restic run first derives the key (~0.5 s), so a
/// run per snapshot would make each push slower the more it has pushed.
fn listed(to: &str, snaps: &[&str]) -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
    let mut out = BTreeMap::new();
    if snaps.is_empty() {
        return Ok(out);
    }
    let mut cmd = restic(to).args(["--no-lock", "find", "--json"]);
    for s in snaps {
        cmd = cmd.arg("-s").arg(s);
    }
    let raw = run(
        &cmd.arg("*"),
        to,
        &format!("cannot list what {} holds", shown(to)),
    )?;
    let hits: Vec<FindHits> =
        serde_json::from_slice(&raw).map_err(|e| anyhow!("cannot read restic's file list: {e}"))?;
    for h in hits {
        let files: &mut BTreeMap<String, u64> = out.entry(h.snapshot).or_default();
        for m in h.matches.into_iter().filter(|m| m.kind == "file") {
            files.insert(m.path, m.size);
        }
    }
    Ok(out)
}

/// One file a snapshot needs: its path in the store and its size there
/// (None when the store has lost it).
type Need = (PathBuf, Option<u64>);

/// Every file snapshot `id` needs, the snapshot file first.
fn needs(store: &Store, dir: &Path, id: &str) -> Result<Vec<Need>> {
    let m = store.load(id)?;
    let size = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .filter(|md| md.file_type().is_file())
            .map(|md| md.len())
    };
    let doc = dir.join("snapshots").join(format!("{id}.json"));
    let mut files = vec![(doc.clone(), size(&doc))];
    for h in m.objects().keys() {
        // An object name is a path below objects/: anything but a hash (a
        // damaged or planted snapshot file) could name a file anywhere on
        // the host, and push would carry it off the host.
        if !crate::store::is_hash(h) {
            bail!("snapshot {id} names an invalid object {h:?}; run guard verify");
        }
        let p = dir.join("objects").join(&h[..2]).join(&h[2..]);
        let s = size(&p);
        files.push((p, s));
    }
    Ok(files)
}

/// How many of the files `need` names a restic snapshot's files lack (or
/// hold at another size than the store's).
fn lacks(there: &BTreeMap<String, u64>, need: &[Need]) -> usize {
    need.iter()
        .filter(|(p, size)| match there.get(p.to_string_lossy().as_ref()) {
            Some(s) => size.is_some_and(|size| size != *s),
            None => true,
        })
        .count()
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
    let repo = shown(to);
    let dir = std::fs::canonicalize(store.dir())
        .with_context(|| format!("cannot open store {}", store.dir().display()))?;
    let claims = tagged(to)?;
    let mut need: Vec<(String, Vec<Need>)> = Vec::new();
    for i in &ids {
        need.push((i.clone(), needs(&store, &dir, i)?));
    }
    // A snapshot counts as there only when a restic snapshot tagged for it
    // holds every file it needs: a backup cut short by an unreadable file
    // still leaves its tags, and skipping on those alone would never send
    // the rest.
    let claimed: Vec<&str> = ids
        .iter()
        .flat_map(|i| claims.get(i).into_iter().flatten())
        .map(String::as_str)
        .collect();
    let held = listed(to, &claimed)?;
    let mut skip: Vec<String> = Vec::new();
    let mut plan: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for (i, files) in need {
        let lacking = claims.get(&i).map(|snaps| {
            snaps
                .iter()
                .map(|s| held.get(s).map_or(files.len(), |h| lacks(h, &files)))
                .min()
                .unwrap_or(files.len())
        });
        if lacking == Some(0) {
            app.ui.say(&format!("  skip  {i} (already in {repo})"));
            skip.push(i);
            continue;
        }
        // Every file the snapshot needs must exist, or the copy off the
        // host would be a snapshot that cannot be restored.
        if let Some((p, _)) = files.iter().find(|(_, size)| size.is_none()) {
            bail!(
                "snapshot {i} needs {}, which is missing; run guard verify",
                p.display()
            );
        }
        let again = match lacking {
            Some(n) => format!("; the copy there lacks {n} of them"),
            None => String::new(),
        };
        app.ui.say(&format!(
            "  push  {i} ({}) to {repo}{again}",
            crate::plural(files.len(), "file")
        ));
        plan.push((i, files.into_iter().map(|(p, _)| p).collect()));
    }
    if !plan.is_empty()
        && !app
            .ui
            .confirm(&format!("push {}?", crate::plural(plan.len(), "snapshot")))?
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
        let cmd = restic(to).args(args).stdin_bytes(list);
        let out = exec::output(&cmd).with_context(|| format!("pushing snapshot {i} failed"))?;
        if !out.status.success() {
            // restic's exit 3: it saved a snapshot without the files it
            // could not read. Its tags stay (append-only), but the next
            // push finds it incomplete and sends the snapshot again.
            let partial = if out.status.code() == Some(3) {
                "; the copy there is incomplete and the next push sends it again"
            } else {
                ""
            };
            bail!(
                "pushing snapshot {i} to {repo} failed: {}{partial}",
                reason(&out, to)
            );
        }
        if !app.json {
            crate::out!("pushed {i}");
        }
    }
    if app.json {
        app.print_json(&json!({
            "repository": repo,
            "pushed": plan.iter().map(|(i, f)| json!({"id": i, "files": f.len()})).collect::<Vec<_>>(),
            "skipped": skip,
        }))?;
    } else if plan.is_empty() {
        crate::out!(
            "nothing new to push; {} already there",
            crate::plural(skip.len(), "snapshot")
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        assert_eq!(
            shown("rest:https://backup:s3cret@host:8000/h/"),
            "rest:https://backup:***@host:8000/h/"
        );
        assert_eq!(shown("rest:http://u:p@ss@host/"), "rest:http://u:***@host/");
        for plain in [
            "/srv/restic",
            "rest:http://host:8000/",
            "sftp:user@host:/srv/r",
            "s3:https://user@s3.example/bucket",
            "rest:http://host/a@b:c",
        ] {
            assert_eq!(shown(plain), plain);
        }
    }
}
