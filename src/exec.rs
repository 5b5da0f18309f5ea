//! The one place guard spawns processes (enforced by `clippy.toml`).
//!
//! Commands are argv lists, never shell strings: no value from a file, a fact
//! or an answer is ever parsed by a shell. [`Cmd::display`] quotes an argv
//! for showing it to a person or writing a reviewable dry-run script.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};

use anyhow::{anyhow, bail, Result};

/// A command to run.
#[derive(Debug, Clone, Default)]
pub struct Cmd {
    pub argv: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// Variables the child must not inherit from guard's environment.
    pub env_remove: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    pub stdin: Option<Vec<u8>>,
    /// Give the child our terminal's stdin (passphrase prompts).
    pub inherit_stdin: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            argv: vec![program.as_ref().to_os_string()],
            ..Default::default()
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.argv.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.argv
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((k.as_ref().to_os_string(), v.as_ref().to_os_string()));
        self
    }

    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Cmd {
        self.env_remove.push(k.as_ref().to_os_string());
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn stdin_bytes(mut self, data: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.argv[0]
    }

    /// The command as a person would type it, each argument quoted for a
    /// POSIX shell where it needs to be.
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(a.as_bytes()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn build(&self) -> std::process::Command {
        #[allow(clippy::disallowed_methods)]
        let mut c = std::process::Command::new(&self.argv[0]);
        c.args(&self.argv[1..]);
        for k in &self.env_remove {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c
    }
}

/// Quotes one argument for a POSIX shell (only for display and dry-run
/// scripts; guard itself never runs a shell). Bytes that are not UTF-8
/// text, and control characters, are written `$'\xNN'` (bash, zsh, ksh,
/// POSIX.1-2024 sh): a lossy `'…\u{fffd}…'` would name another file, and
/// a raw control character would garble the terminal the fix is read on.
pub fn shell_quote(a: &[u8]) -> String {
    let safe = !a.is_empty()
        && a.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(b));
    if safe {
        return String::from_utf8_lossy(a).into_owned();
    }
    match std::str::from_utf8(a) {
        Ok(s) if !s.chars().any(char::is_control) => {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
        _ => {
            let mut out = String::from("$'");
            for chunk in a.utf8_chunks() {
                for c in chunk.valid().chars() {
                    match c {
                        '\\' | '\'' => {
                            out.push('\\');
                            out.push(c);
                        }
                        c if c.is_control() => {
                            let mut buf = [0; 4];
                            for b in c.encode_utf8(&mut buf).bytes() {
                                out.push_str(&format!("\\x{b:02x}"));
                            }
                        }
                        c => out.push(c),
                    }
                }
                for b in chunk.invalid() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            out.push('\'');
            out
        }
    }
}

fn spawn_error(cmd: &Cmd, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow!(
            "{} is not installed (needed for: {})",
            cmd.program().to_string_lossy(),
            cmd.display()
        )
    } else {
        anyhow!("cannot run {}: {}", cmd.display(), e)
    }
}

/// Children running now. A package hook that gives up on a hung guard
/// ([`crate::hooks`]) ends them too: a hung `rpm -qa` left behind would keep
/// its lock on the rpm database and stall the very transaction the hook
/// stepped aside for.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<u32>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends SIGKILL to every child [`output`] and [`run_streaming`] are
/// waiting for; for a process about to end itself.
pub fn kill_running() {
    for pid in running().iter() {
        // SAFETY: kill(2) has no memory effects; a pid is still ours until
        // it is untracked, which happens right after it is reaped.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// Keeps a child's pid in [`RUNNING`] while it lives.
struct Tracked(u32);

impl Tracked {
    fn new(pid: u32) -> Tracked {
        running().push(pid);
        Tracked(pid)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        running().retain(|p| *p != self.0);
    }
}

/// A line of output as a terminal leaves it: a progress counter redraws
/// its line with `\r` (dpkg's "(Reading database ... 5%" up to "100%"),
/// and on the screen only its last state stays. Kept whole, one such line
/// is twenty states long on guard's output and in the journal's tail.
fn last_state(line: &str) -> String {
    let line = line.trim_end_matches('\n').trim_end_matches('\r');
    line.rsplit('\r').next().unwrap_or(line).to_string()
}

/// Runs to completion, capturing stdout and stderr.
pub fn output(cmd: &Cmd) -> Result<Output> {
    let mut c = cmd.build();
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if cmd.stdin.is_some() {
        Stdio::piped()
    } else if cmd.inherit_stdin {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().map_err(|e| spawn_error(cmd, e))?;
    let _tracked = Tracked::new(child.id());
    if let Some(data) = &cmd.stdin {
        let mut si = child.stdin.take().expect("piped stdin");
        let data = data.clone();
        // A writer thread so a child that fills its stdout pipe before
        // reading all of stdin cannot deadlock us.
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    child
        .wait_with_output()
        .map_err(|e| anyhow!("{}: {}", cmd.display(), e))
}

/// Runs and returns stdout; a non-zero exit is an error carrying stderr.
pub fn stdout_of(cmd: &Cmd) -> Result<Vec<u8>> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            cmd.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The result of a streamed run.
#[derive(Debug, Clone)]
pub struct Streamed {
    pub status: ExitStatus,
    /// The last lines of combined output, for journals and error messages.
    pub tail: String,
}

/// Runs with stdout and stderr streamed line by line to `on_line` (and so to
/// the screen and the journal), keeping the last `keep` lines.
pub fn run_streaming(cmd: &Cmd, keep: usize, on_line: &mut dyn FnMut(&str)) -> Result<Streamed> {
    let mut c = cmd.build();
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if cmd.inherit_stdin {
        Stdio::inherit()
    } else if cmd.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().map_err(|e| spawn_error(cmd, e))?;
    let _tracked = Tracked::new(child.id());
    if let (Some(data), Some(mut si)) = (cmd.stdin.clone(), child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().expect("piped")),
        Box::new(child.stderr.take().expect("piped")),
    ];
    for pipe in pipes {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let text = last_state(&String::from_utf8_lossy(&line));
                if tx.send(text).is_err() {
                    break;
                }
                line.clear();
            }
        }));
    }
    drop(tx);
    let mut tail: std::collections::VecDeque<String> = Default::default();
    for line in rx {
        on_line(&line);
        tail.push_back(line);
        if tail.len() > keep {
            tail.pop_front();
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(|e| anyhow!("{}: {}", cmd.display(), e))?;
    Ok(Streamed {
        status,
        tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
    })
}

/// Runs with our own stdin, stdout and stderr (a helper binary the user
/// talks to directly); returns its exit code.
pub fn passthrough(program: &Path, args: &[OsString]) -> Result<i32> {
    let cmd = Cmd::new(program).args(args);
    let status = cmd.build().status().map_err(|e| spawn_error(&cmd, e))?;
    Ok(status.code().unwrap_or(3))
}

/// Runs a command that talks to the user's terminal (a passphrase
/// prompt): our stdin and stderr, and its stdout onto our stderr too.
/// guard's stdout holds only what guard prints (with `--json`, exactly one
/// document): a line `cryptsetup` prints there must not land in front of
/// it. Returns the exit code.
pub fn attached(program: &Path, args: &[OsString]) -> Result<i32> {
    use std::os::fd::AsFd;
    let cmd = Cmd::new(program).args(args);
    let err = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| anyhow!("{}: {e}", cmd.display()))?;
    let status = cmd
        .build()
        .stdout(Stdio::from(err))
        .status()
        .map_err(|e| spawn_error(&cmd, e))?;
    Ok(status.code().unwrap_or(3))
}

/// Whether `program` can be found on PATH (or is an existing path).
pub fn available(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_names_the_same_bytes_in_bash() {
        for arg in [
            &b"/etc/plain.conf"[..],
            b"/etc/it's here",
            b"/etc/name-\xe9",
            b"/etc/a\nb\\c'd\x1b",
            "/etc/caf\u{e9}".as_bytes(),
        ] {
            let q = shell_quote(arg);
            assert!(!q.contains('\u{fffd}') && !q.contains('\n'), "{q}");
            let script = format!("printf %s {q}");
            let out = stdout_of(&Cmd::new("bash").arg("-c").arg(&script)).unwrap();
            assert_eq!(out.as_slice(), arg, "{q}");
        }
    }

    #[test]
    fn arguments_are_never_shell_parsed() {
        let out = stdout_of(
            &Cmd::new("printf")
                .arg("%s|")
                .arg("a b; rm -rf /")
                .arg("$(x)"),
        )
        .unwrap();
        assert_eq!(out, b"a b; rm -rf /|$(x)|");
    }

    #[test]
    fn display_quotes_for_review() {
        let c = Cmd::new("pacman").args(["-S", "a b", "it's"]);
        assert_eq!(c.display(), "pacman -S 'a b' 'it'\\''s'");
    }

    #[test]
    fn missing_program_says_so() {
        let err = output(&Cmd::new("guard-no-such-tool"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not installed"), "{err}");
    }

    #[test]
    fn streaming_keeps_what_a_terminal_shows_of_a_redrawn_line() {
        let mut seen = Vec::new();
        let r = run_streaming(
            &Cmd::new("printf").arg("(Reading 5%%\\r(Reading 100%%)\\nDOS line\\r\\n"),
            10,
            &mut |l| seen.push(l.to_string()),
        )
        .unwrap();
        assert_eq!(seen, ["(Reading 100%)", "DOS line"]);
        assert_eq!(r.tail, "(Reading 100%)\nDOS line");
    }

    #[test]
    fn streaming_keeps_a_tail_and_the_status() {
        let mut seen = Vec::new();
        let r = run_streaming(
            &Cmd::new("sh")
                .arg("-c")
                .arg("for i in 1 2 3 4; do echo $i; done; exit 3"),
            2,
            &mut |l| seen.push(l.to_string()),
        )
        .unwrap();
        assert_eq!(seen, ["1", "2", "3", "4"]);
        assert_eq!(r.tail, "3\n4");
        assert_eq!(r.status.code(), Some(3));
    }
}
