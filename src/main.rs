//! The `guard` binary: parse, run, map the result to an exit code.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = match guard::cli::Cli::try_parse() {
        Ok(cli) => {
            let json = cli.global.json;
            match guard::app::run(cli) {
                Ok(code) => code,
                Err(e) => fail(json, &format!("{e:#}")),
            }
        }
        // --help and --version: their text on stdout, exit 0. With --json
        // the version is a document like every other answer (DESIGN §2:
        // one JSON document on stdout); help stays text, which is what
        // was asked for (as do `completions` and `man`).
        Err(e) if !e.use_stderr() => {
            let json = std::env::args_os().skip(1).any(|a| a == "--json");
            if json && e.kind() == clap::error::ErrorKind::DisplayVersion {
                guard::json_out!(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }));
            } else {
                let _ = e.print();
            }
            0
        }
        // A usage error is bad input: exit 3 (UNKNOWN) like any other, not
        // clap's 2, which the contract reserves for CRITICAL; with --json
        // the error document too. (--json is looked for in the raw
        // arguments, as parsing is what failed.)
        Err(e) => {
            let json = std::env::args_os().skip(1).any(|a| a == "--json");
            match blame_the_environment(&e) {
                Some(msg) => fail(json, &msg),
                None => {
                    // clap's own text for a missing subcommand lists the
                    // hidden `hook-run` (and `help`): a user who typed
                    // `guard` alone is offered the public commands instead
                    if e.kind() == clap::error::ErrorKind::MissingSubcommand {
                        guard::err_out!(
                            "error: {}\n\nFor more information, try '--help'.",
                            usage_message(&e)
                        );
                    } else {
                        let _ = e.print();
                    }
                    if json {
                        guard::json_out!(serde_json::json!({ "error": usage_message(&e) }));
                    }
                    3
                }
            }
        }
    };
    // Flush what was printed, then end without the C runtime's exit
    // handlers: all they would do is hand the allocator's memory back to a
    // process that is about to vanish. Nothing guard owns needs them:
    // files are synced where it matters, locks go with the process.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// The error line on stderr, and with --json the error document on
/// stdout; exit 3.
fn fail(json: bool, msg: &str) -> i32 {
    if json {
        guard::json_out!(serde_json::json!({ "error": msg }));
    }
    guard::err_out!("guard: {msg}");
    3
}

/// A value clap refused that came from an environment variable, not the
/// command line (`GUARD_STORE=` set but empty): clap names the flag the
/// variable stands for, which the user never typed. Name the variable.
fn blame_the_environment(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split_whitespace().next()?;
    // (--root and --store take an empty value from clap and are refused
    // in `app::run`, which names their variables the same way)
    if flag != "--connect" || guard::app::typed("--connect") {
        return None;
    }
    match std::env::var_os("GUARD_LIBVIRT_URI") {
        Some(v) if v.is_empty() => {
            Some(guard::app::empty_variable("GUARD_LIBVIRT_URI", "--connect"))
        }
        _ => None,
    }
}

/// A usage error as one line for the error document: clap's message
/// without its usage block. A command that has subcommands of its own and
/// is given none (`guard vm`) is answered with its help, which has no
/// message at all: say which subcommand is missing instead of the help's
/// first line (the command's description).
fn usage_message(e: &clap::Error) -> String {
    let text = e.to_string();
    // (clap's own message for a missing subcommand lists the hidden
    // `hook-run` too: the public command's list instead)
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
    ) {
        // the help's usage line names the command: `Usage: guard vm [OPTIONS] <COMMAND>`
        let words: Vec<&str> = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Usage: "))
            .unwrap_or("guard")
            .split_whitespace()
            .take_while(|w| !w.starts_with(['[', '<']))
            .collect();
        let mut cmd = guard::cli::public_command();
        for w in words.iter().skip(1) {
            match cmd.find_subcommand(w) {
                Some(c) => cmd = c.clone(),
                None => break,
            }
        }
        let subs: Vec<&str> = cmd
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name())
            .collect();
        return format!(
            "'{}' requires a subcommand but one was not provided [subcommands: {}]",
            words.join(" "),
            subs.join(", ")
        );
    }
    let text = text.split("\n\n").next().unwrap_or_default();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
