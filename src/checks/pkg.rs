//! `pkg/changed`: packages upgraded, added or removed since the baseline.

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
