//! `pkg/changed`: packages upgraded, added or removed since the baseline;
//! `pkg/unfinished`: packages a failed or interrupted transaction left
//! unconfigured.

use super::{Check, Context};
use crate::diff;
use crate::report::{Finding, Severity};

pub struct Packages;

impl Check for Packages {
    fn name(&self) -> &'static str {
        "packages"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let Some(base) = cx.baseline else {
            return Vec::new();
        };
        let changes = diff::packages(base, cx.live);
        if changes.is_empty() {
            return Vec::new();
        }
        let (mut up, mut add, mut rm) = (0, 0, 0);
        let lines: Vec<String> = changes
            .iter()
            .map(|c| match (&c.old, &c.new) {
                (Some(a), Some(b)) => {
                    up += 1;
                    format!("upgraded {} {a} -> {b}", c.name)
                }
                (None, Some(b)) => {
                    add += 1;
                    format!("added {} {b}", c.name)
                }
                (Some(a), None) => {
                    rm += 1;
                    format!("removed {} {a}", c.name)
                }
                (None, None) => unreachable!("a change has a side"),
            })
            .collect();
        vec![Finding::new(
            "pkg/changed",
            Severity::Info,
            &[],
            format!(
                "packages changed since the snapshot: {up} upgraded, {add} added, {rm} removed"
            ),
        )
        .detail(lines.join("\n"))]
    }
}

/// `pkg/unfinished`: what `dpkg --audit` would list. Looked for on every
/// check, whatever the baseline: a package left half-configured blocks
/// every apt run until `dpkg --configure -a`, whether the transaction that
/// left it ran before or after the snapshot. (An earlier version skipped
/// the look when the package databases were unchanged since the baseline,
/// so a box snapshotted with a package stuck said "nothing damaged" for
/// ever.) Reading the status file costs a few milliseconds.
pub struct Unfinished;

impl Check for Unfinished {
    fn name(&self) -> &'static str {
        "unfinished packages"
    }

    fn run(&self, cx: &Context) -> Vec<Finding> {
        let left = crate::pkg::unfinished(cx.root);
        if left.is_empty() {
            return Vec::new();
        }
        let names: Vec<String> = left.iter().map(|(p, s)| format!("{p} ({s})")).collect();
        vec![Finding::new(
            "pkg/unfinished",
            Severity::Warning,
            &[],
            // short: the summary after a transaction cuts lines at 120
            format!(
                "dpkg left {} unfinished: {}",
                crate::plural(left.len(), "package"),
                names.join(", ")
            ),
        )
        .detail(names.join("\n"))
        .fix("dpkg --configure -a (then apt-get -f install if dependencies are missing)")]
    }
}
