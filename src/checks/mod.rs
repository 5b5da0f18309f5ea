//! The checks `guard check` runs: each turns the diff between the baseline
//! and the live system, plus the live files of the root, into findings.
//!
//! Generic file findings (`file/*`) come from `files.rs`; every other check
//! is specific, and a specific finding that names a path replaces the
//! generic `file/*` finding for that path (one finding per kind of damage).
//! A new check is a type implementing [`Check`], listed in [`specific`].

mod caps;
mod files;
mod pkg;

use std::collections::BTreeSet;

use crate::diff::Change;
use crate::report::{Finding, Severity};
use crate::store::{Manifest, Store};
use crate::sysroot::SysRoot;

/// Everything a check may look at.
pub struct Context<'a> {
    pub root: &'a SysRoot,
    /// The snapshot compared against; `None` when there is none.
    pub baseline: Option<&'a Manifest>,
    /// The live system, scanned just now (content hashed, not stored).
    pub live: &'a Manifest,
    /// File changes from baseline to live (empty without a baseline).
    pub changes: &'a [Change],
    /// To read recorded content (for diffs in `detail`).
    pub store: &'a Store,
}

pub trait Check {
    /// Short name, for errors.
    fn name(&self) -> &'static str;
    fn run(&self, cx: &Context) -> Vec<Finding>;
}

/// The semantic checks, in no particular order (the report sorts).
fn specific() -> Vec<Box<dyn Check>> {
    vec![Box::new(caps::Caps), Box::new(pkg::Packages)]
}

/// Runs every check and merges the results.
pub fn run_all(cx: &Context) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for c in specific() {
        out.extend(c.run(cx));
    }
    let claimed: BTreeSet<String> = out.iter().flat_map(|f| f.paths.iter().cloned()).collect();
    out.extend(
        files::Files
            .run(cx)
            .into_iter()
            .filter(|f| !f.paths.iter().any(|p| claimed.contains(p))),
    );
    if cx.baseline.is_none() {
        out.push(
            Finding::new(
                "baseline/none",
                Severity::Info,
                &[],
                "no baseline snapshot: only checks that need none ran",
            )
            .fix("guard snapshot --label baseline"),
        );
    }
    if !cx.live.errors.is_empty() {
        let mut f = Finding::new(
            "scan/unreadable",
            Severity::Info,
            &[],
            format!(
                "{} path(s) could not be read and were not compared",
                cx.live.errors.len()
            ),
        );
        f.detail = Some(
            cx.live
                .errors
                .iter()
                .take(20)
                .map(|e| format!("{}: {}", e.path, e.error))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        out.push(f);
    }
    out
}
