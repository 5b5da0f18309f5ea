//! The scripted front end: no prompts. Answers come from `--yes` and an
//! answers file; anything they do not cover is refused with a clear error,
//! never guessed. Used off a terminal (hooks, units, CI) and by tests; on a
//! terminal the terminal front end reads the answers file itself.

use anyhow::{bail, Result};

use super::{NoProgress, Progress, StepChoice, Ui, UiOptions};

pub struct Scripted {
    opts: UiOptions,
}

impl Scripted {
    pub fn new(opts: UiOptions) -> Scripted {
        Scripted { opts }
    }
}

impl Ui for Scripted {
    fn is_interactive(&self) -> bool {
        false
    }

    fn progress(&self, _len: u64, _what: &str) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }

    fn spinner(&self, _what: &str) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }

    fn confirm(&self, prompt: &str) -> Result<bool> {
        if self.opts.yes {
            return Ok(true);
        }
        bail!("refusing without confirmation: {prompt} (no terminal to ask on; pass --yes)")
    }

    fn multi_select(&self, prompt: &str, items: &[String], _: &[bool]) -> Result<Vec<usize>> {
        self.confirm(prompt)?;
        Ok((0..items.len()).collect())
    }

    fn confirm_destructive(&self, step: &str, target: &str, what: &str) -> Result<bool> {
        let key = format!("{step}:{target}");
        if self.opts.confirmed.iter().any(|c| c == &key) {
            return Ok(true);
        }
        bail!(
            "refusing destructive step {step} ({what}): no terminal to type the name on; --yes never confirms a destructive step, \
             add confirm = [\"{key}\"] to an answers file"
        )
    }

    fn select(&self, id: &str, prompt: &str, items: &[String], default: usize) -> Result<usize> {
        match self.opts.answers.get(id) {
            Some(a) => match items.iter().position(|x| x == a) {
                Some(i) => Ok(i),
                None => bail!("answer {a:?} for {id} is not one of: {}", items.join(", ")),
            },
            None if self.opts.yes => Ok(default),
            None => bail!("no answer for question {id} ({prompt}) and no terminal to ask on"),
        }
    }

    fn input(&self, id: &str, prompt: &str, default: Option<&str>) -> Result<String> {
        match (self.opts.answers.get(id), default) {
            (Some(a), _) => Ok(a.clone()),
            (None, Some(d)) if self.opts.yes => Ok(d.to_string()),
            _ => bail!("no answer for question {id} ({prompt}) and no terminal to ask on"),
        }
    }

    fn step_choice(&self, step: &str) -> Result<StepChoice> {
        // Running a step is an ordinary confirmation, which only --yes gives
        // (DESIGN §2), as on a terminal: an answers file answers questions
        // and confirms the destructive steps it names, and its mere
        // presence must not tick off a manual step ("Reboot now") unread.
        if self.opts.yes {
            return Ok(StepChoice::Run);
        }
        bail!(
            "step {step} needs confirmation and there is no terminal: pass --yes (an answers file answers questions, it does not confirm steps)"
        )
    }

    fn say(&self, msg: &str) {
        crate::err_out!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_never_confirms_a_destructive_step() {
        let ui = Scripted::new(UiOptions {
            yes: true,
            ..Default::default()
        });
        assert!(ui.confirm("restore?").unwrap());
        let err = ui
            .confirm_destructive("luks-format", "/dev/vg/lv", "format")
            .unwrap_err();
        assert!(err.to_string().contains("never confirms"), "{err}");
        let ui = Scripted::new(UiOptions {
            confirmed: vec!["luks-format:/dev/vg/lv".into()],
            ..Default::default()
        });
        assert!(ui
            .confirm_destructive("luks-format", "/dev/vg/lv", "format")
            .unwrap());
        assert!(ui
            .confirm_destructive("luks-format", "/dev/vg/other", "format")
            .is_err());
    }

    #[test]
    fn no_terminal_and_no_yes_refuses() {
        let ui = Scripted::new(UiOptions::default());
        assert!(ui.confirm("restore 2 files?").is_err());
    }

    #[test]
    fn an_answers_file_does_not_confirm_a_step() {
        let ui = Scripted::new(UiOptions {
            answers: [("colour".to_string(), "blue".to_string())].into(),
            confirmed: vec!["wipe:/dev/x".into()],
            ..Default::default()
        });
        let err = ui.step_choice("reboot").unwrap_err().to_string();
        assert!(err.contains("pass --yes"), "{err}");
        let ui = Scripted::new(UiOptions {
            yes: true,
            ..Default::default()
        });
        assert_eq!(ui.step_choice("reboot").unwrap(), StepChoice::Run);
    }
}
