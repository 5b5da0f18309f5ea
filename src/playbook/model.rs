//! The playbook file format (TOML, DESIGN §5): what a playbook and its steps
//! say. Pure data; the engine gives it meaning.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::engine::reserved;

/// The format version this build reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Playbook {
    pub version: u32,
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// os-release `ID`s (or `ID_LIKE` entries) the playbook is written for;
    /// empty: any system.
    #[serde(default)]
    pub applies_to: Vec<String>,
    /// Default values of variables; facts and answers override them. Not
    /// for a variable only guard sets (`engine::reserved`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Step {
    pub id: String,
    pub title: String,
    /// What the step does and why, for a tired administrator.
    pub explain: String,
    /// Precondition: `name`, `!name`, `name == value`, `name != value`,
    /// joined with `&&` / `||` (no parentheses; `&&` binds tighter).
    #[serde(default)]
    pub when: Option<String>,
    /// The condition in words, for prompts and the dry-run script.
    #[serde(default)]
    pub when_text: Option<String>,
    /// Already done? Then the step is skipped. On resume, a done step whose
    /// `run` check here no longer passes (a reboot undid it) is done again.
    #[serde(default)]
    pub done_if: Option<Test>,
    /// Checked after the step ran; a failure stops the walk.
    #[serde(default)]
    pub verify: Option<Test>,
    /// Formatting or overwriting: the target's name must be typed.
    #[serde(default)]
    pub destructive: Option<Destructive>,
    /// What to do when the step fails.
    #[serde(default)]
    pub on_failure: Option<String>,

    // --- the action: exactly one of run, builtin, ask, manual ---
    /// A command as an argv list; `{var}` is substituted per argument; an
    /// argument starting with `?` is dropped when a variable in it is unset
    /// or empty.
    #[serde(default)]
    pub run: Option<Vec<String>>,
    /// With `run`: bytes written to the command's stdin when nobody is at a
    /// terminal (a package manager's first "Proceed?"). Every later question
    /// reads end-of-input, which pacman and zypper take as "no".
    #[serde(default)]
    pub feed: Option<String>,
    /// With `run`: exit codes that also mean success (zypper's 102/103:
    /// done, reboot or restart needed).
    #[serde(default)]
    pub ok_codes: Vec<i32>,
    /// With `run`: the command talks to the person (passphrases); on a
    /// terminal it gets it directly and its output is not recorded.
    #[serde(default)]
    pub interactive: bool,
    /// With `run`: the command only looks; it sets `fact` to `yes` when its
    /// output contains one of `patterns`, `no` otherwise, and never fails
    /// the walk.
    #[serde(default)]
    pub probe: Option<Probe>,
    /// `snapshot`, `check`, `restore`, `vm-clone`, `keyring-populate`,
    /// `luks-target-check`, `luks-header-backup`.
    #[serde(default)]
    pub builtin: Option<String>,
    /// Arguments of the builtin (values substituted like argv); `check`
    /// takes `against` and `restore` takes `from`, a snapshot id such as
    /// `{snapshot_id}` (which the `snapshot` builtin sets).
    #[serde(default)]
    pub with: BTreeMap<String, String>,
    #[serde(default)]
    pub ask: Option<Ask>,
    /// A manual step: text the person follows and then confirms.
    #[serde(default)]
    pub manual: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Test {
    /// Passes when the command exits 0 (or `status`) and its output
    /// contains `output`.
    #[serde(default)]
    pub run: Option<Vec<String>>,
    #[serde(default)]
    pub output: Option<String>,
    /// With `run`: the exit code that passes instead of 0, for a test that
    /// something is absent (`grep` exits 1 when no line matched, 2 on an
    /// error, which never passes).
    #[serde(default)]
    pub status: Option<i32>,
    /// Passes when the condition holds.
    #[serde(default)]
    pub cond: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Destructive {
    /// The device or volume destroyed; the person types it.
    pub target: String,
    pub what: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Probe {
    pub fact: String,
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Ask {
    /// The variable (and answers-file key) the answer goes to; not one
    /// only guard sets (`engine::reserved`).
    pub var: String,
    pub prompt: String,
    #[serde(default)]
    pub choices: Vec<String>,
    #[serde(default)]
    pub default: Option<String>,
    /// Validation of free text: `name`, `path`, `number` or `text`.
    #[serde(default = "text_kind")]
    pub kind: String,
}

fn text_kind() -> String {
    "text".into()
}

pub const BUILTINS: &[&str] = &[
    "snapshot",
    "check",
    "restore",
    "vm-clone",
    "keyring-populate",
    "luks-target-check",
    "luks-header-backup",
];

impl Playbook {
    pub fn parse(text: &str, origin: &str) -> Result<Playbook> {
        let pb: Playbook = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("playbook {origin}: {}", e.message()))?;
        pb.validate()
            .map_err(|e| anyhow::anyhow!("playbook {origin}: {e}"))?;
        Ok(pb)
    }

    fn validate(&self) -> Result<()> {
        if self.version != FORMAT_VERSION {
            bail!(
                "format version {} (this guard reads version {FORMAT_VERSION})",
                self.version
            );
        }
        // A variable only guard sets (`root`, `store`, `snapshot_id`) is
        // not the playbook's to set: a typed answer, a probe's finding or a
        // default would override `--root` or what a builtin found.
        for var in self.vars.keys() {
            if let Some(r) = reserved(var) {
                bail!("[vars] sets {var}, {r}; use another name");
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.steps {
            if !seen.insert(&s.id) {
                bail!("step id {} is used twice", s.id);
            }
            if s.id.is_empty() || !s.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                bail!("step id {:?}: use letters, digits and -", s.id);
            }
            let actions = [
                s.run.is_some(),
                s.builtin.is_some(),
                s.ask.is_some(),
                s.manual.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if actions != 1 {
                bail!(
                    "step {}: needs exactly one of run, builtin, ask, manual",
                    s.id
                );
            }
            if let Some(r) = &s.run {
                if r.is_empty() {
                    bail!("step {}: run is an empty argv", s.id);
                }
            }
            if (s.probe.is_some() || s.feed.is_some() || s.interactive) && s.run.is_none() {
                bail!("step {}: probe, feed and interactive go with run", s.id);
            }
            let sets = [
                s.ask.as_ref().map(|a| ("ask", &a.var)),
                s.probe.as_ref().map(|p| ("probe", &p.fact)),
            ];
            for (how, var) in sets.into_iter().flatten() {
                if let Some(r) = reserved(var) {
                    bail!("step {}: {how} sets {var}, {r}; use another name", s.id);
                }
            }
            if let Some(b) = &s.builtin {
                if !BUILTINS.contains(&b.as_str()) {
                    bail!(
                        "step {}: unknown builtin {b} (known: {})",
                        s.id,
                        BUILTINS.join(", ")
                    );
                }
                // what a restore step puts back is fixed in the playbook, and
                // a misspelt one must not fall back to every vanished path
                if let Some(w) = s.with.get("what").filter(|_| b == "restore") {
                    if !["vanished", "pam", "caps"].contains(&w.as_str()) {
                        bail!(
                            "step {}: restore what = {w:?} (known: vanished, pam, caps)",
                            s.id
                        );
                    }
                }
            }
            for (name, t) in [("done-if", &s.done_if), ("verify", &s.verify)] {
                let Some(t) = t else { continue };
                if t.run.as_ref().is_some_and(|r| r.is_empty()) {
                    bail!("step {}: {name} runs an empty argv", s.id);
                }
                if (t.output.is_some() || t.status.is_some()) && t.run.is_none() {
                    bail!("step {}: {name}'s output and status go with run", s.id);
                }
            }
            for c in s.when.iter().chain(
                [&s.done_if, &s.verify]
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.cond.as_ref()),
            ) {
                super::engine::Cond::parse(c).map_err(|e| anyhow::anyhow!("step {}: {e}", s.id))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Playbook;

    /// A playbook of one step whose body is `step` (TOML lines).
    fn one_step(step: &str) -> String {
        format!(
            "version = 1\nid = \"p\"\ntitle = \"t\"\n[[steps]]\nid = \"m\"\ntitle = \"m\"\n\
             explain = \"m\"\n{step}\n"
        )
    }

    /// A restore step's `what` is one of the three it knows: a misspelt one
    /// used to mean every vanished path.
    #[test]
    fn a_restore_step_names_what_it_restores() {
        let pb = |what: &str| {
            one_step(&format!(
                "builtin = \"restore\"\nwith = {{ what = \"{what}\" }}"
            ))
        };
        for ok in ["vanished", "pam", "caps"] {
            assert!(Playbook::parse(&pb(ok), "test").is_ok(), "{ok}");
        }
        let e = Playbook::parse(&pb("pam-files"), "test").unwrap_err();
        assert!(
            e.to_string().contains("restore what = \"pam-files\""),
            "{e}"
        );
    }

    /// A test's exit status or expected output without a command to run
    /// would pass unchecked; a verify condition is parsed as done-if's is.
    #[test]
    fn a_test_is_checked_when_the_playbook_is_read() {
        let pb = |test: &str| one_step(&format!("manual = \"m\"\n{test}"));
        assert!(Playbook::parse(
            &pb("verify = { run = [\"grep\", \"-q\", \"x\", \"f\"], status = 1 }"),
            "t"
        )
        .is_ok());
        let e = Playbook::parse(&pb("verify = { status = 1 }"), "t").unwrap_err();
        assert!(
            e.to_string()
                .contains("verify's output and status go with run"),
            "{e}"
        );
        let e = Playbook::parse(&pb("done-if = { run = [] }"), "t").unwrap_err();
        assert!(e.to_string().contains("done-if runs an empty argv"), "{e}");
        let e = Playbook::parse(&pb("verify = { cond = \"a ==\" }"), "t").unwrap_err();
        assert!(e.to_string().starts_with("playbook t: step m:"), "{e}");
        let e = Playbook::parse(&pb("verify = { run = [\"true\"], exit = 1 }"), "t").unwrap_err();
        assert!(e.to_string().contains("unknown field `exit`"), "{e}");
    }
}
