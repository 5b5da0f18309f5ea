//! Playbooks: step-by-step, resumable walks through upgrades and migrations.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::app::App;

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
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("answers file {}: {}", p.display(), e.message()))
    }
}

pub fn cmd_list(_app: &App) -> Result<i32> {
    bail!("playbooks are not available in this build yet")
}

pub fn cmd_show(_app: &App, _name: &str) -> Result<i32> {
    bail!("playbooks are not available in this build yet")
}

pub fn cmd_run(_app: &App, _name: &str, _dry_run: bool, _resume: bool) -> Result<i32> {
    bail!("playbooks are not available in this build yet")
}
