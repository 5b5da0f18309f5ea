//! `caps/lost` and `caps/changed`: file capabilities that an update dropped
//! (incident 3), telling "the same file lost its xattr" from "the package
//! replaced the file".

use super::{Check, Context, Live};
use crate::diff::{self, CapChange};
use crate::report::{Finding, Severity};
use crate::store::CapEntry;

pub struct Caps;

/// How the live file relates to the recorded one.
fn fate(cx: &Context, old: &CapEntry) -> String {
    match cx.root.lstat(&old.path) {
        Err(_) => "the file is gone".into(),
        Ok(st) => {
            let same = st.st_ino == old.ino
                && st.st_size as u64 == old.size
                && st.st_mtime == old.mtime.sec;
            if same {
                "the same file lost its capabilities".into()
            } else {
                "the file was replaced since the snapshot, as a package update does".into()
            }
        }
    }
}

/// Adds the services that run the binary (their `ExecStart` names it).
fn with_services(mut f: Finding, cx: &Context, path: &crate::sysroot::SysPath) -> Finding {
    let mut users = super::systemd::units_running(&Live(cx.root), path);
    if users.is_empty() {
        // the unit may have gone with the upgrade too: ask the snapshot
        if let Some(b) = cx.baseline {
            let rec = super::Recorded {
                manifest: b,
                store: cx.store,
            };
            users = super::systemd::units_running(&rec, path);
        }
    }
    if !users.is_empty() {
        let names: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
        f.message
            .push_str(&format!("; used by {}", names.join(", ")));
        for (_, e) in users {
            f.evidence.push(e);
        }
    }
    f
}

impl Check for Caps {
    fn name(&self) -> &'static str {
        "caps"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let Some(base) = cx.baseline else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ch in diff::caps(&base.caps, &cx.live.caps) {
            match ch {
                CapChange::Lost { old } => {
                    let gone = !cx.root.exists(&old.path);
                    let f = Finding::new(
                        "caps/lost",
                        Severity::Critical,
                        &[&old.path],
                        format!(
                            "{} lost its capabilities {}: {}",
                            old.path,
                            old.caps,
                            fate(cx, &old)
                        ),
                    );
                    let f = with_services(f, cx, &old.path);
                    out.push(if gone {
                        f.fix(format!(
                            "reinstall the package that provides {}, then guard restore --caps",
                            old.path
                        ))
                    } else {
                        f.fix("guard restore --caps")
                    });
                }
                CapChange::Changed { old, new } => out.push(with_services(
                    Finding::new(
                        "caps/changed",
                        Severity::Warning,
                        &[&old.path],
                        format!(
                            "{} capabilities changed: {} -> {}",
                            old.path, old.caps, new.caps
                        ),
                    )
                    .fix("guard restore --caps"),
                    cx,
                    &old.path,
                )),
                CapChange::Added { new } => out.push(Finding::new(
                    "caps/added",
                    Severity::Info,
                    &[&new.path],
                    format!("{} gained capabilities {}", new.path, new.caps),
                )),
            }
        }
        out
    }
}
