//! The terminal front end: dialoguer prompts and indicatif bars. The only
//! file that knows either crate.

use anyhow::{bail, Result};
use dialoguer::{theme::ColorfulTheme, Confirm, Input, MultiSelect, Select};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{NoProgress, Progress, StepChoice, Ui, UiOptions};

pub struct Terminal {
    opts: UiOptions,
}

impl Terminal {
    pub fn new(opts: UiOptions) -> Terminal {
        Terminal { opts }
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
    fn set_message(&self, msg: &str) {
        self.0.set_message(crate::printable(msg).into_owned());
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
    fn println(&self, line: &str) {
        self.0.println(crate::printable(line));
    }
}

/// A question the answers file answered: shown, so the person at the
/// terminal sees what was decided for them.
fn from_answers(prompt: &str, answer: &str) {
    crate::err_out!("{prompt} {answer} (from the answers file)");
}

/// The items of a list prompt as they may be shown (see [`crate::printable`]):
/// a restore plan's items are paths from the guarded system.
fn printable_items(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|i| crate::printable(i).into_owned())
        .collect()
}

fn interrupted(e: dialoguer::Error) -> anyhow::Error {
    anyhow::anyhow!("prompt failed: {e}")
}

impl Ui for Terminal {
    fn is_interactive(&self) -> bool {
        true
    }

    fn progress(&self, len: u64, what: &str) -> Box<dyn Progress> {
        if !self.opts.progress {
            return Box::new(NoProgress);
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        pb.set_prefix(crate::printable(what).into_owned());
        Box::new(Bar(pb))
    }

    fn spinner(&self, what: &str) -> Box<dyn Progress> {
        if !self.opts.progress {
            return Box::new(NoProgress);
        }
        let pb = ProgressBar::new_spinner();
        pb.set_draw_target(ProgressDrawTarget::stderr());
        pb.set_message(crate::printable(what).into_owned());
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        Box::new(Bar(pb))
    }

    fn confirm(&self, prompt: &str) -> Result<bool> {
        if self.opts.yes {
            return Ok(true);
        }
        Confirm::with_theme(&ColorfulTheme::default())
            .with_prompt(crate::printable(prompt))
            .default(false)
            .interact()
            .map_err(interrupted)
    }

    fn multi_select(&self, prompt: &str, items: &[String], checked: &[bool]) -> Result<Vec<usize>> {
        if self.opts.yes {
            return Ok((0..items.len()).collect());
        }
        MultiSelect::with_theme(&ColorfulTheme::default())
            .with_prompt(crate::printable(&format!(
                "{prompt} (space toggles, enter accepts)"
            )))
            .items(&printable_items(items))
            .defaults(checked)
            .interact()
            .map_err(interrupted)
    }

    fn confirm_destructive(&self, step: &str, target: &str, what: &str) -> Result<bool> {
        if self
            .opts
            .confirmed
            .iter()
            .any(|c| c == &format!("{step}:{target}"))
        {
            crate::err_out!("DESTRUCTIVE: {what} (confirmed by the answers file: {step}:{target})");
            return Ok(true);
        }
        crate::err_out!("DESTRUCTIVE: {what}");
        let typed: String = Input::with_theme(&ColorfulTheme::default())
            .with_prompt(crate::printable(&format!(
                "Type {target} to go on (anything else stops)"
            )))
            .allow_empty(true)
            .interact_text()
            .map_err(interrupted)?;
        Ok(typed.trim() == target)
    }

    fn select(&self, id: &str, prompt: &str, items: &[String], default: usize) -> Result<usize> {
        if let Some(a) = self.opts.answers.get(id) {
            if let Some(i) = items.iter().position(|x| x == a) {
                from_answers(prompt, a);
                return Ok(i);
            }
            bail!("answer {a:?} for {id} is not one of: {}", items.join(", "));
        }
        Select::with_theme(&ColorfulTheme::default())
            .with_prompt(crate::printable(prompt))
            .items(&printable_items(items))
            .default(default)
            .interact()
            .map_err(interrupted)
    }

    fn input(&self, id: &str, prompt: &str, default: Option<&str>) -> Result<String> {
        if let Some(a) = self.opts.answers.get(id) {
            from_answers(prompt, a);
            return Ok(a.clone());
        }
        let theme = ColorfulTheme::default();
        let mut i = Input::<String>::with_theme(&theme).with_prompt(crate::printable(prompt));
        if let Some(d) = default {
            i = i.default(d.to_string());
        }
        i.interact_text().map_err(interrupted)
    }

    fn step_choice(&self, step: &str) -> Result<StepChoice> {
        // Only --yes runs a step unasked; an answers file answers questions,
        // it never confirms a step (a manual one would be ticked off unread).
        if self.opts.yes {
            return Ok(StepChoice::Run);
        }
        let items = ["Run", "Skip", "Details", "Abort"];
        let i = Select::with_theme(&ColorfulTheme::default())
            .with_prompt(format!("Step {step}"))
            .items(&items)
            .default(0)
            .interact()
            .map_err(interrupted)?;
        Ok([
            StepChoice::Run,
            StepChoice::Skip,
            StepChoice::Details,
            StepChoice::Abort,
        ][i])
    }

    fn say(&self, msg: &str) {
        crate::err_out!("{msg}");
    }
}
