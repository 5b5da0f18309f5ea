//! Acknowledged findings: an admin accepts a known finding
//! (`--ack file/modified:/etc/motd`) so it stops failing monitors. Stored in
//! the store as `acks.json`; acknowledged findings count as info.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::report::Finding;
use crate::store::Store;
use crate::sysroot::SysPath;

const DOC: &str = "acks.json";

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
    path: String,
    added: String,
}

/// `FINDING:PATH`, e.g. `file/modified:/etc/motd`. The path is normalised
/// so `/etc//motd` and `/etc/motd` are the same acknowledgement.
fn parse(spec: &str) -> Result<(String, String)> {
    let Some((finding, path)) = spec.split_once(':') else {
        bail!("--ack/--unack take FINDING:PATH (e.g. file/modified:/etc/motd), got {spec:?}");
    };
    if !finding.contains('/') || finding.contains(char::is_whitespace) {
        bail!("{finding:?} is not a finding id (like file/modified)");
    }
    if !path.starts_with('/') {
        bail!("{path:?} must be an absolute path inside the root");
    }
    Ok((finding.to_string(), SysPath::new(path).to_string()))
}

fn load(store: &Store) -> Result<Acks> {
    match store.read_doc_file(DOC)? {
        None => Ok(Acks {
            version: 1,
            acks: vec![],
        }),
        Some(raw) => {
            let a: Acks = serde_json::from_slice(&raw).map_err(|e| {
                anyhow::anyhow!("{} is corrupt: {e}", store.dir().join(DOC).display())
            })?;
            if a.version != 1 {
                bail!("acks.json version {} is not supported", a.version);
            }
            Ok(a)
        }
    }
}

/// Marks acknowledged findings.
pub fn apply(store: &Store, findings: &mut [Finding]) -> Result<()> {
    let acks = load(store)?;
    for f in findings.iter_mut() {
        f.acknowledged = acks
            .acks
            .iter()
            .any(|a| a.finding == f.id && f.paths.contains(&a.path));
    }
    Ok(())
}

pub fn command(app: &App, add: &[String], remove: &[String], list: bool) -> Result<i32> {
    let adds: Vec<(String, String)> = add.iter().map(|s| parse(s)).collect::<Result<_>>()?;
    let removes: Vec<(String, String)> = remove.iter().map(|s| parse(s)).collect::<Result<_>>()?;
    let mut acks;
    if adds.is_empty() && removes.is_empty() {
        acks = load(&app.store_read()?)?;
    } else {
        let store = app.store_write()?;
        acks = load(&store)?;
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        for (finding, path) in adds {
            if !acks
                .acks
                .iter()
                .any(|a| a.finding == finding && a.path == path)
            {
                app.ui.say(&format!("acknowledged {finding}:{path}"));
                acks.acks.push(Ack {
                    finding,
                    path,
                    added: now.clone(),
                });
            }
        }
        for (finding, path) in removes {
            let before = acks.acks.len();
            acks.acks
                .retain(|a| !(a.finding == finding && a.path == path));
            if acks.acks.len() == before {
                bail!("{finding}:{path} was not acknowledged");
            }
            app.ui
                .say(&format!("no longer acknowledged: {finding}:{path}"));
        }
        store.write_doc_file(DOC, &serde_json::to_vec_pretty(&acks)?)?;
    }
    // with --json there is always one document: the acks as they now are
    if app.json {
        app.print_json(&acks)?;
    } else if list {
        for a in &acks.acks {
            crate::out!("{}:{}  (since {})", a.finding, a.path, a.added);
        }
    }
    Ok(0)
}
