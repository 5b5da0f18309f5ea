//! Acknowledged findings: an admin accepts a known finding
//! (`--ack file/modified:/etc/motd`) so it stops failing monitors. Stored in
//! the store as `acks.json`; acknowledged findings count as info.
//!
//! An acknowledgement covers the finding the admin looked at, not every
//! finding of that id on that path for ever: it records the finding's
//! [`fingerprint`]. The file modified again, a unit that loses one more
//! hardening directive, more packages signed by unknown keys — each is a
//! new fingerprint, so a finding that fails monitors again until it is
//! acknowledged again. (Version 1 of acks.json had no fingerprints; its
//! acknowledgements still cover any finding of their id and path.)
//!
//! A finding that names no path (`pkg/changed`, `pkg/unfinished`,
//! `scan/unreadable`) is acknowledged by its id alone (`--ack
//! pkg/changed`), recorded with an empty path: there is one such finding
//! of each id, and its fingerprint pins what it says.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::App;
use crate::report::Finding;
use crate::store::{Manifest, Store};
use crate::sysroot::SysPath;

const DOC: &str = "acks.json";

/// The version written; 1 is read too.
const VERSION: u32 = 2;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Acks {
    version: u32,
    acks: Vec<Ack>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Ack {
    finding: String,
    /// Empty for a finding that names no path. (An empty string, not an
    /// absent key: a guard before pathless acks reads the file still, and
    /// the ack covers nothing there.)
    path: String,
    added: String,
    /// The fingerprints of the findings acknowledged (one per finding of
    /// this id naming this path); empty in version 1: any state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fingerprints: Vec<String>,
}

impl Ack {
    fn covers(&self, f: &Finding) -> bool {
        self.finding == f.id
            && names(f, &self.path)
            && (self.fingerprints.is_empty() || self.fingerprints.contains(&f.fingerprint))
    }
}

/// Whether an ack's path picks out `f`: a path among the finding's, or
/// the empty path for a finding that names none.
fn names(f: &Finding, path: &str) -> bool {
    if path.is_empty() {
        f.paths.is_empty()
    } else {
        f.paths.iter().any(|p| p == path)
    }
}

/// `FINDING:PATH`, or `FINDING` alone for a finding without a path: as
/// the user types it.
fn spec(finding: &str, path: &str) -> String {
    if path.is_empty() {
        finding.to_string()
    } else {
        format!("{finding}:{path}")
    }
}

/// What identifies a finding as the admin saw it: its id, severity, paths,
/// message, detail and evidence, and the recorded and live state (kind,
/// mode, owner, content hash, link target, xattrs) of each of its paths.
/// The state is there because the text may not show a change: for a file
/// only root may read it says "content changed" whatever the content.
/// Timestamps are left out: a file touched but unchanged is the same
/// finding.
pub fn fingerprint(f: &Finding, base: Option<&Manifest>, live: &Manifest) -> String {
    let state = |m: Option<&Manifest>, p: &str| {
        m.and_then(|m| m.entry(&SysPath::new(p))).map(|e| {
            json!({
                "kind": e.kind.as_str(),
                "mode": e.mode,
                "uid": e.uid,
                "gid": e.gid,
                "blake3": e.blake3,
                "target": e.target.as_ref().map(|t| crate::sysroot::escape_bytes(&t.0)),
                "rdev": e.rdev,
                "xattrs": e.xattrs,
            })
        })
    };
    let mut paths: Vec<&String> = f.paths.iter().collect();
    paths.sort();
    paths.dedup();
    let doc = json!({
        "id": f.id,
        "severity": f.severity,
        "paths": paths
            .iter()
            .map(|p| json!({"path": p, "was": state(base, p), "is": state(Some(live), p)}))
            .collect::<Vec<_>>(),
        "message": f.message,
        "detail": f.detail,
        "evidence": f.evidence,
    });
    blake3::hash(doc.to_string().as_bytes()).to_hex()[..32].to_string()
}

/// `FINDING:PATH`, e.g. `file/modified:/etc/motd`, or `FINDING` alone
/// (`pkg/changed`) for a finding that names no path. The path is
/// normalised so `/etc//motd` and `/etc/motd` are the same
/// acknowledgement.
fn parse(spec: &str) -> Result<(String, String)> {
    let (finding, path) = spec.split_once(':').unwrap_or((spec, ""));
    if !finding.contains('/') || finding.contains(char::is_whitespace) {
        bail!(
            "--ack/--unack take FINDING:PATH (e.g. file/modified:/etc/motd), or FINDING for a finding without a path (pkg/changed); {finding:?} is not a finding id"
        );
    }
    if path.is_empty() {
        return Ok((finding.to_string(), String::new()));
    }
    if !path.starts_with('/') {
        bail!("{path:?} must be an absolute path inside the root");
    }
    Ok((finding.to_string(), SysPath::new(path).to_string()))
}

fn load(store: &Store) -> Result<Acks> {
    match store.read_doc_file(DOC)? {
        None => Ok(Acks {
            version: VERSION,
            acks: vec![],
        }),
        Some(raw) => {
            let a: Acks = serde_json::from_slice(&raw).map_err(|e| {
                anyhow::anyhow!("{} is corrupt: {e}", store.dir().join(DOC).display())
            })?;
            if a.version == 0 || a.version > VERSION {
                bail!(
                    "acks.json version {} is not supported (this guard reads up to {VERSION})",
                    a.version
                );
            }
            Ok(a)
        }
    }
}

/// Marks acknowledged findings.
pub fn apply(store: &Store, findings: &mut [Finding]) -> Result<()> {
    let acks = load(store)?;
    for f in findings.iter_mut() {
        f.acknowledged = acks.acks.iter().any(|a| a.covers(f));
    }
    Ok(())
}

/// `guard check --ack/--unack/--acks`. An acknowledgement is of a finding
/// the check makes now: its fingerprints are taken from the live check.
pub fn command(app: &App, add: &[String], remove: &[String], list: bool) -> Result<i32> {
    let adds: Vec<(String, String)> = add.iter().map(|s| parse(s)).collect::<Result<_>>()?;
    let removes: Vec<(String, String)> = remove.iter().map(|s| parse(s)).collect::<Result<_>>()?;
    let mut pinned = Vec::new();
    if !adds.is_empty() {
        let report = crate::app::check(app, None)?;
        for (finding, path) in adds {
            let mut prints: Vec<String> = report
                .findings
                .iter()
                .filter(|f| f.id == finding && names(f, &path))
                .map(|f| f.fingerprint.clone())
                .collect();
            prints.sort();
            prints.dedup();
            if prints.is_empty() {
                let with_paths = report
                    .findings
                    .iter()
                    .any(|f| f.id == finding && !f.paths.is_empty());
                if path.is_empty() && with_paths {
                    bail!(
                        "the {finding} findings name paths: acknowledge one with --ack {finding}:PATH (guard check lists them)"
                    );
                }
                let of = if path.is_empty() {
                    String::new()
                } else {
                    format!(" for {path}")
                };
                bail!(
                    "there is no {finding} finding{of} now: nothing to acknowledge (guard check lists the findings)"
                );
            }
            pinned.push((finding, path, prints));
        }
    }
    let mut acks;
    if pinned.is_empty() && removes.is_empty() {
        acks = load(&app.store_read()?)?;
    } else {
        let store = app.store_write()?;
        acks = load(&store)?;
        acks.version = VERSION;
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        for (finding, path, fingerprints) in pinned {
            match acks
                .acks
                .iter_mut()
                .find(|a| a.finding == finding && a.path == path)
            {
                Some(a) if a.fingerprints == fingerprints => {}
                Some(a) => {
                    // the finding changed since: the admin accepts it as it is now
                    app.ui.say(&format!(
                        "acknowledged {} as it is now",
                        spec(&finding, &path)
                    ));
                    a.fingerprints = fingerprints;
                    a.added = now.clone();
                }
                None => {
                    app.ui
                        .say(&format!("acknowledged {}", spec(&finding, &path)));
                    acks.acks.push(Ack {
                        finding,
                        path,
                        added: now.clone(),
                        fingerprints,
                    });
                }
            }
        }
        for (finding, path) in removes {
            let before = acks.acks.len();
            acks.acks
                .retain(|a| !(a.finding == finding && a.path == path));
            if acks.acks.len() == before {
                bail!("{} was not acknowledged", spec(&finding, &path));
            }
            app.ui.say(&format!(
                "no longer acknowledged: {}",
                spec(&finding, &path)
            ));
        }
        store.write_doc_file(DOC, &serde_json::to_vec_pretty(&acks)?)?;
    }
    // with --json there is always one document: the acks as they now are
    if app.json {
        app.print_json(&acks)?;
    } else if list {
        for a in &acks.acks {
            let any = if a.fingerprints.is_empty() {
                "; any state: --ack again to pin it"
            } else {
                ""
            };
            crate::out!("{}  (since {}{any})", spec(&a.finding, &a.path), a.added);
        }
    }
    Ok(0)
}
