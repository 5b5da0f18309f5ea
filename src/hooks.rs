//! Fitting guard into the system: package-manager hooks, systemd units,
//! off-host copies.

use anyhow::{bail, Result};

use crate::app::App;
use crate::cli::{InstallAction, ManagerArg};

pub fn command(_app: &App, _action: InstallAction, _manager: Option<ManagerArg>) -> Result<i32> {
    bail!("hooks are not available in this build yet")
}

pub fn units_command(_app: &App, _action: InstallAction) -> Result<i32> {
    bail!("units are not available in this build yet")
}

pub fn push_command(_app: &App, _id: Option<&str>, _to: &str) -> Result<i32> {
    bail!("push is not available in this build yet")
}
