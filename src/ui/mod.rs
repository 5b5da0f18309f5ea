//! How guard talks to the person at the terminal, behind a trait: the core
//! asks for confirmations and reports progress here and never knows whether a
//! terminal (`term.rs`, dialoguer + indicatif) or a script (`scripted.rs`,
//! answers file, tests, hooks) is on the other side.

mod scripted;
mod term;

use std::collections::BTreeMap;

use anyhow::Result;

pub use scripted::Scripted;
pub use term::Terminal;

/// Progress of one long piece of work.
pub trait Progress: Send + Sync {
    fn set_length(&self, len: u64);
    fn inc(&self, n: u64);
    fn set_message(&self, msg: &str);
    fn finish(&self);
    /// A line of output shown above the bar or spinner (a command's output
    /// streamed while it runs).
    fn println(&self, line: &str) {
        crate::err_out!("{line}");
    }
}

/// Progress nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_length(&self, _: u64) {}
    fn inc(&self, _: u64) {}
    fn set_message(&self, _: &str) {}
    fn finish(&self) {}
}

/// What the person at the other end answered to a step prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepChoice {
    Run,
    Skip,
    Details,
    Abort,
}

pub trait Ui: Send + Sync {
    /// A person can be asked (a terminal on stdin and stderr).
    fn is_interactive(&self) -> bool;
    /// A progress bar (or nothing, off a terminal or with `--no-progress`).
    fn progress(&self, len: u64, what: &str) -> Box<dyn Progress>;
    /// A spinner for work of unknown length.
    fn spinner(&self, what: &str) -> Box<dyn Progress>;
    /// An ordinary yes/no question. `--yes` answers yes; with no terminal and
    /// no `--yes` this is an error, never a silent yes.
    fn confirm(&self, prompt: &str) -> Result<bool>;
    /// Lets the person select items, those `checked` is true for selected
    /// to begin with; returns the indices kept. With `--yes` or no terminal
    /// (and `--yes`) every item is kept, checked or not.
    fn multi_select(&self, prompt: &str, items: &[String], checked: &[bool]) -> Result<Vec<usize>>;
    /// A destructive step: the person must type `target`. `--yes` never
    /// suffices; a script must name `step:target` in its answers' `confirm`.
    fn confirm_destructive(&self, step: &str, target: &str, what: &str) -> Result<bool>;
    /// Pick one of `items`; `id` names the question for answers files.
    fn select(&self, id: &str, prompt: &str, items: &[String], default: usize) -> Result<usize>;
    /// Free text; `id` names the question for answers files.
    fn input(&self, id: &str, prompt: &str, default: Option<&str>) -> Result<String>;
    /// Run / Skip / Details / Abort for a playbook step. `--yes` runs it
    /// unasked; an answers file never does (it answers questions).
    fn step_choice(&self, step: &str) -> Result<StepChoice>;
    /// A line for the person (stderr); never part of `--json` output.
    fn say(&self, msg: &str);
}

/// Settings shared by both front ends.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    pub yes: bool,
    pub progress: bool,
    /// question id → answer, from an answers file
    pub answers: BTreeMap<String, String>,
    /// `step:target` pairs confirmed in an answers file
    pub confirmed: Vec<String>,
}

/// A terminal UI when stdin and stderr are terminals, a scripted one
/// otherwise. An answers file does not turn the terminal off: the terminal
/// UI takes the answers it gives and asks the rest, so manual steps are
/// still confirmed by the person and commands keep the terminal's stdin
/// (cryptsetup reads the passphrase there; a "Reboot now" step is not ticked
/// off unread).
pub fn make(opts: UiOptions) -> Box<dyn Ui> {
    use std::io::IsTerminal;
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if tty {
        Box::new(Terminal::new(opts))
    } else {
        Box::new(Scripted::new(opts))
    }
}
