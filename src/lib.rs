//! guard: a guarded upgrade and migration assistant for Linux servers.
//!
//! Data flows one way: `scan` (live tree) and `store` (snapshot) feed `diff`,
//! `checks` turn changes into findings, `report` shows them, `restore` plans
//! and applies. `exec` is the only process spawner; `ui` the only terminal.

/// `println!` that never panics. A reader that goes away early (`guard list
/// | head -1`, a monitoring probe that times out) closes stdout; `println!`
/// would then panic and exit 101, outside the contract's 0–3, and lose the
/// command's own result. The command finishes and exits with its code.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            $crate::printable(&format!($($arg)*))
        );
    }};
}

/// `eprintln!` that never panics (see [`out!`]): stderr can be a closed
/// pipe too (`guard check 2>&1 | head -1`).
#[macro_export]
macro_rules! err_out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            $crate::printable(&format!($($arg)*))
        );
    }};
}

/// `print!` without the newline, never panicking (see [`out!`]).
#[macro_export]
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(
            std::io::stdout().lock(),
            "{}",
            $crate::printable(&format!($($arg)*))
        );
    }};
}

/// One JSON document on stdout, never panicking (see [`out!`]), written as
/// serde made it: [`printable`] would turn the DEL and C1 characters serde
/// leaves raw into `\xNN`, which is no JSON escape.
#[macro_export]
macro_rules! json_out {
    ($doc:expr) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), "{}", $doc);
    }};
}

/// Text as guard may print it to a terminal: every control character but
/// the newline and the tab written `\xNN`. Names and content come from the
/// guarded system, which an unprivileged user (a file named
/// `/etc/\x1b]2;…\x07`) or a hostile guest image writes; printed raw, an
/// escape sequence in them could retitle, recolour or rewrite the screen
/// the administrator decides on. `out!`, `err_out!` and the terminal UI
/// print through this. A newline in a name is escaped where the name is
/// written ([`crate::sysroot::escape_bytes`]), so it cannot add a line to a
/// restore plan. JSON does not go through this ([`json_out!`]).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A message fragment that goes after a colon or a word: its first letter
/// lower case (the OS's "No such file or directory" reads "included, but
/// no such file or directory").
pub fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `1 item`, `2 items`, `0 entries`: a count with its noun in the number
/// it takes. Output read by people says "1 package", not "1 packages"
/// or "1 package(s)".
pub fn plural(n: impl TryInto<u64>, one: &str) -> String {
    let n: u64 = n.try_into().unwrap_or(u64::MAX);
    if n == 1 {
        return format!("1 {one}");
    }
    let vowel_y = one.len() >= 2 && one[..one.len() - 1].ends_with(['a', 'e', 'o', 'u']);
    match one.strip_suffix('y') {
        Some(stem) if !vowel_y => format!("{n} {stem}ies"),
        _ => format!("{n} {one}s"),
    }
}

pub mod acks;
pub mod app;
pub mod checks;
pub mod cli;
pub mod diff;
pub mod exec;
pub mod hooks;
pub mod interrupt;
pub mod pkg;
pub mod playbook;
pub mod privs;
pub mod push;
pub mod report;
pub mod restore;
pub mod scan;
pub mod store;
pub mod sysroot;
pub mod ui;
pub mod units;
#[cfg(feature = "vm")]
pub mod vm;
pub mod vmlink;
pub mod xattr;

#[cfg(test)]
mod tests {
    #[test]
    fn plurals() {
        assert_eq!(super::plural(1, "item"), "1 item");
        assert_eq!(super::plural(0usize, "item"), "0 items");
        assert_eq!(super::plural(2u64, "entry"), "2 entries");
        assert_eq!(super::plural(3, "key"), "3 keys");
        assert_eq!(super::plural(1, "entry"), "1 entry");
    }
}
