//! The journal of a walk (`journals/ID.json` in the store): what each step
//! did and printed, the facts and answers, saved after every step so that
//! `--resume` knows where the walk stopped, and read by `prune` for the
//! snapshots an unfinished walk still needs. Apart from the walk because
//! it is a stored document with readers of its own.

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use super::vars::{refuse_reserved, Vars};
use crate::app::App;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Journal {
    pub version: u32,
    pub playbook: String,
    pub started: String,
    pub finished: Option<String>,
    pub facts: Vars,
    /// Answers given and facts set by probes during the walk.
    pub answers: Vars,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepRecord {
    pub id: String,
    /// `done`, `skipped`, `already-done`, `failed`
    pub status: String,
    pub started: String,
    pub ended: String,
    pub note: Option<String>,
    pub commands: Vec<CmdRecord>,
    /// The attempts before this one, oldest first: a failed step retried
    /// on `--resume` (or a done one done again) keeps what it did and
    /// printed then, the evidence of what the upgrade went through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CmdRecord {
    pub argv: Vec<String>,
    pub exit: Option<i32>,
    pub tail: String,
}

impl Journal {
    /// Records `rec` as its step's outcome. The record of an earlier
    /// attempt (failed, or done before a reboot undid it) moves into
    /// `rec.earlier`: one record per step, with its history.
    pub(super) fn put(&mut self, mut rec: StepRecord) {
        if let Some(i) = self.steps.iter().position(|r| r.id == rec.id) {
            let mut old = self.steps.remove(i);
            rec.earlier = std::mem::take(&mut old.earlier);
            rec.earlier.push(old);
        }
        self.steps.push(rec);
    }
}

pub(super) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn journal_rel(id: &str) -> String {
    format!("journals/{id}.json")
}

/// How long a journal save, and a builtin step that writes to the store
/// (`snapshot`, `restore`), waits for the store lock. A step that already
/// ran must be recorded: refused here, `--resume` would run it again. And
/// a step refused for the lock stops the walk halfway for nothing. The
/// snapshot timer (Persistent=true, so it fires right after the reboot a
/// walk resumes from) holds the lock for a snapshot's length.
pub(super) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The bound for a builtin step: `LOCK_WAIT`, unless the tests shorten it
/// (`GUARD_TEST_STEP_LOCK_WAIT_SECS`) to see a step give up without waiting
/// a minute. The journal save keeps the full bound, so that the give-up is
/// recorded while the other guard still holds the lock.
pub(super) fn step_lock_wait() -> std::time::Duration {
    std::env::var("GUARD_TEST_STEP_LOCK_WAIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(LOCK_WAIT)
}

pub(super) fn save(app: &App, j: &Journal) -> Result<()> {
    let store = app.store_write_waiting("save the playbook journal", LOCK_WAIT)?;
    let data = serde_json::to_vec_pretty(j)?;
    store.write_doc_file(&journal_rel(&j.playbook), &data)
}

/// The journal of an unfinished walk of `id`, for `--resume` (and its dry
/// run): refused when there is none, when the walk finished, or when its
/// answers set `root` or `store`.
pub fn resumable_journal(app: &App, id: &str) -> Result<Journal> {
    match load_journal(app, id)? {
        Some(j) if j.finished.is_none() => {
            let path = app.store_dir.join(journal_rel(id));
            let origin = format!("the answers in journal {}", path.display());
            refuse_reserved(&j.answers, &origin, false)?;
            Ok(j)
        }
        Some(_) => bail!(
            "the last run of {id} has finished; nothing to resume (run it again without --resume)"
        ),
        None => bail!("no journal of {id} to resume; start it with guard run {id}"),
    }
}

pub fn load_journal(app: &App, id: &str) -> Result<Option<Journal>> {
    let store = app.store_read()?;
    match store.read_doc_file(&journal_rel(id))? {
        None => Ok(None),
        Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
            anyhow!("journal {} is unreadable: {e}", journal_rel(id))
        })?)),
    }
}

/// The snapshots an unfinished walk may still check or restore against:
/// every answer of an unfinished journal (`snapshot_id`, which the walk's
/// own `snapshot` step set, and whatever an answers file gave), so that a
/// `prune` between a walk's stop and its `--resume` keeps them. Read
/// loosely (only `finished` and `answers`), so a journal of another guard
/// version still counts; one that cannot be read at all is an error, not
/// "needs nothing".
pub fn snapshots_in_use(store: &crate::store::Store) -> Result<std::collections::BTreeSet<String>> {
    let mut ids = std::collections::BTreeSet::new();
    for name in store.doc_names("journals")? {
        if !name.ends_with(".json") {
            continue;
        }
        let rel = format!("journals/{name}");
        let Some(raw) = store.read_doc_file(&rel)? else {
            continue; // (gone since listed: a walk's journal being replaced)
        };
        let j: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
            anyhow!("journal {rel} is unreadable ({e}): cannot tell which snapshots its walk still needs")
        })?;
        if !j.get("finished").is_none_or(|f| f.is_null()) {
            continue;
        }
        if let Some(answers) = j.get("answers").and_then(|a| a.as_object()) {
            ids.extend(
                answers
                    .values()
                    .filter_map(|v| v.as_str())
                    .map(str::to_string),
            );
        }
    }
    Ok(ids)
}
