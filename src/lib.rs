//! guard: a guarded upgrade and migration assistant for Linux servers.
//!
//! Data flows one way: `scan` (live tree) and `store` (snapshot) feed `diff`,
//! `checks` turn changes into findings, `report` shows them, `restore` plans
//! and applies. `exec` is the only process spawner; `ui` the only terminal.

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
