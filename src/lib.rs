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
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (see [`out!`]): stderr can be a closed
/// pipe too (`guard check 2>&1 | head -1`).
#[macro_export]
macro_rules! err_out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `print!` without the newline, never panicking (see [`out!`]).
#[macro_export]
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod acks;
pub mod app;
pub mod checks;
pub mod cli;
pub mod diff;
pub mod exec;
pub mod hooks;
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
