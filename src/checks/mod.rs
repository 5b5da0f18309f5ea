//! The checks `guard check` runs: each turns the diff between the baseline
//! and the live system, plus the live files of the root, into findings.
//!
//! Generic file findings (`file/*`) come from `files.rs`; every other check
//! is specific, and a specific finding that names a path replaces the
//! generic `file/*` finding for that path (one finding per kind of damage).
//! A new check is a type implementing [`Check`], listed in [`specific`].

mod caps;
pub mod files;
pub mod keyring;
pub mod merges;
pub mod pam;
mod pkg;
pub mod ssh;
pub mod sysfiles;
pub mod systemd;

use std::collections::BTreeSet;

use crate::diff::Change;
use crate::report::{Evidence, Finding, Severity};
use crate::store::{Entry, Manifest, Store};
use crate::sysroot::{SysPath, SysRoot};

/// Everything a check may look at.
pub struct Context<'a> {
    pub root: &'a SysRoot,
    /// The snapshot compared against; `None` when there is none.
    pub baseline: Option<&'a Manifest>,
    /// The live system, scanned just now (content hashed, not stored).
    pub live: &'a Manifest,
    /// File changes from baseline to live (empty without a baseline).
    pub changes: &'a [Change],
    /// To read recorded content (for diffs in `detail`).
    pub store: &'a Store,
}

pub trait Check {
    /// Short name, for errors.
    fn name(&self) -> &'static str;
    fn run(&self, cx: &Context) -> Vec<Finding>;
}

/// The semantic checks, in no particular order (the report sorts).
fn specific() -> Vec<Box<dyn Check>> {
    vec![
        Box::new(caps::Caps),
        Box::new(pkg::Packages),
        Box::new(pkg::Unfinished),
        Box::new(pam::Pam),
        Box::new(ssh::Ssh),
        Box::new(systemd::Systemd),
        Box::new(merges::Merges),
        Box::new(sysfiles::SysFiles),
        Box::new(keyring::Keyring),
    ]
}

/// Reads files of one side (the baseline from the store, or the live
/// root), so a parser computes "before" and "after" the same way.
pub trait Files {
    /// Text of a regular file (symlinks followed inside the root); `None`
    /// when absent or unreadable.
    fn text(&self, p: &SysPath) -> Option<String>;
    /// Why a file that is there could not be read (too large, not a
    /// regular file, no permission); `None` when it is simply absent, or
    /// when this side cannot tell.
    fn unreadable(&self, _p: &SysPath) -> Option<String> {
        None
    }
    /// Names in a directory as they are (bytes), sorted. A name that is
    /// not UTF-8 is still a file the program reads: sshd's `Include` glob
    /// matches it, so a path to open is joined from these.
    fn names(&self, dir: &SysPath) -> Vec<Vec<u8>>;
    /// Names in a directory as text (lossy), sorted: for names compared
    /// with known ones, never for a path to open.
    fn list(&self, dir: &SysPath) -> Vec<String> {
        let mut v: Vec<String> = self
            .names(dir)
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        v.sort();
        v
    }
}

/// The live root.
pub struct Live<'a>(pub &'a SysRoot);

impl Files for Live<'_> {
    fn text(&self, p: &SysPath) -> Option<String> {
        self.0.read_text(p.clone())
    }
    fn unreadable(&self, p: &SysPath) -> Option<String> {
        match self.0.read_follow(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Some(e.to_string()),
            _ => None,
        }
    }
    fn names(&self, dir: &SysPath) -> Vec<Vec<u8>> {
        self.0.list_dir(dir)
    }
}

/// A snapshot: entries of the manifest, content from the store. Symlinks
/// recorded in the snapshot are followed within it (a few hops).
pub struct Recorded<'a> {
    pub manifest: &'a Manifest,
    pub store: &'a Store,
}

/// The regular file `p` names in a snapshot, its recorded symlinks
/// followed within it (a few hops).
pub(crate) fn recorded_file<'m>(m: &'m Manifest, p: &SysPath) -> Option<&'m Entry> {
    let mut p = p.clone();
    for _ in 0..8 {
        let e = m.entry(&p)?;
        match e.kind {
            crate::store::FileKind::File => return Some(e),
            crate::store::FileKind::Symlink => {
                let t = &e.target.as_ref()?.0;
                p = if t.starts_with(b"/") {
                    SysPath::new(t)
                } else {
                    p.parent()?.join(t)
                };
                p = normalize(&p);
            }
            _ => return None,
        }
    }
    None
}

impl Files for Recorded<'_> {
    fn text(&self, p: &SysPath) -> Option<String> {
        let e = recorded_file(self.manifest, p)?;
        let raw = self.store.read_object(e.blake3.as_ref()?).ok()?;
        Some(String::from_utf8_lossy(&raw).into_owned())
    }
    fn names(&self, dir: &SysPath) -> Vec<Vec<u8>> {
        // entries are sorted by path: a directory's descendants follow it
        // contiguously, so find the run instead of scanning everything
        // ("/etc/pam.d.bak" sorts between "/etc/pam.d" and its children,
        // so search for the "/etc/pam.d/" prefix itself)
        let es = &self.manifest.entries;
        let mut prefix = dir.as_bytes().to_vec();
        if !dir.is_root() {
            prefix.push(b'/');
        }
        let start = es.partition_point(|e| e.path.as_bytes() < prefix.as_slice());
        let mut v: Vec<Vec<u8>> = es[start..]
            .iter()
            .take_while(|e| e.path.as_bytes().starts_with(&prefix))
            .filter(|e| e.path.parent().as_ref() == Some(dir))
            .map(|e| e.path.file_name().to_vec())
            .collect();
        v.sort();
        v
    }
}

/// Folds `..` components (a recorded symlink target may use them).
pub fn normalize(p: &SysPath) -> SysPath {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in p.as_bytes().split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    SysPath::new(parts.join(&b'/'))
}

/// Whether others may read the live file `p` names, as the system
/// resolves it: its mode grants others read and every directory on the way
/// to where it really is (after symlinks) lets them through. Anything that
/// cannot be told (no /proc in an alpm chroot) counts as not readable.
pub fn live_readable(root: &SysRoot, p: &SysPath) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = root.open_follow(p) else {
        return false;
    };
    if !rustix::fs::fstat(&f).is_ok_and(|st| st.st_mode & 0o004 != 0) {
        return false;
    }
    let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())) else {
        return false;
    };
    let Some(real) = root.sys_path(&real) else {
        return false;
    };
    real.ancestors()
        .iter()
        .all(|d| root.lstat(d).is_ok_and(|st| st.st_mode & 0o001 != 0))
}

/// The content of the live regular file `e` records, read without
/// following a symlink, and only when it is still what the scan hashed.
/// Whether others may read it was decided from that scan: a file replaced
/// since (by a symlink to `/etc/shadow`, say, in a directory its owner may
/// write) must not be read through that decision. `None` when it changed,
/// is no longer a regular file, or cannot be read.
pub fn live_content(root: &SysRoot, e: &Entry) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = root.open_exact(&e.path).ok()?;
    let st = rustix::fs::fstat(&f).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return None;
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    (Some(blake3::hash(&buf).to_hex().as_str()) == e.blake3.as_deref()).then_some(buf)
}

/// Whether others could read the file `p` names in snapshot `m` (its
/// recorded symlinks followed); false when the snapshot has no such file.
pub fn recorded_readable(m: &Manifest, p: &SysPath) -> bool {
    recorded_file(m, p).is_some_and(|e| m.world_readable(e))
}

/// Whether a check may quote the content of the file `p` (a line of it,
/// or anything taken verbatim from it): only when users other than its
/// owner and group could read it, on every side that has it — live, and
/// in the snapshot compared against. A 0600 sshd drop-in or a 0640
/// `imapd.conf` is named with its line number, never quoted
/// ("secrets never leave the store", DESIGN §2).
pub fn may_quote(cx: &Context, p: &SysPath) -> bool {
    let live = cx.root.exists(p);
    let recorded = cx.baseline.filter(|b| recorded_file(b, p).is_some());
    if !live && recorded.is_none() {
        return false;
    }
    (!live || live_readable(cx.root, p)) && recorded.is_none_or(|b| recorded_readable(b, p))
}

/// Takes the quoted line out of evidence from a file others cannot read
/// (see [`may_quote`]); the path and line number stay, so the admin can
/// look for themselves. Done once here for every check, so a new check
/// cannot forget it.
fn redact_evidence(cx: &Context, findings: &mut [Finding]) {
    let mut cache: std::collections::HashMap<String, bool> = Default::default();
    for ev in findings.iter_mut().flat_map(|f| f.evidence.iter_mut()) {
        if ev.text.is_none() {
            continue;
        }
        let ok = *cache
            .entry(ev.path.clone())
            .or_insert_with(|| may_quote(cx, &SysPath::new(ev.path.as_bytes())));
        if !ok {
            ev.text = None;
            ev.note
                .push_str(" (line not shown: the file is not world-readable)");
        }
    }
}

/// Evidence pointing at one line of a file.
pub fn line_evidence(path: &SysPath, line: usize, text: &str, note: impl Into<String>) -> Evidence {
    Evidence::new(path, Some(line as u32), Some(text.trim().to_string()), note)
}

/// Runs every check and merges the results.
pub fn run_all(cx: &Context) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let timer = crate::scan::PhaseTimer::new();
    for c in specific() {
        out.extend(c.run(cx));
        timer.phase(c.name());
    }
    let claimed: BTreeSet<String> = out.iter().flat_map(|f| f.paths.iter().cloned()).collect();
    out.extend(
        files::FileChanges
            .run(cx)
            .into_iter()
            .filter(|f| !f.paths.iter().any(|p| claimed.contains(p))),
    );
    redact_evidence(cx, &mut out);
    if cx.baseline.is_none() {
        out.push(
            Finding::new(
                "baseline/none",
                Severity::Info,
                &[],
                "no baseline snapshot: only checks that need none ran",
            )
            .fix("guard snapshot --label baseline"),
        );
    }
    if !cx.live.errors.is_empty() {
        let mut f = Finding::new(
            "scan/unreadable",
            Severity::Info,
            &[],
            format!(
                "{} could not be read and {} not compared",
                crate::plural(cx.live.errors.len(), "path"),
                if cx.live.errors.len() == 1 {
                    "was"
                } else {
                    "were"
                }
            ),
        );
        f.detail = Some(
            cx.live
                .errors
                .iter()
                .take(20)
                .map(|e| format!("{}: {}", e.path, e.error))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_lists_children_past_look_alike_siblings() {
        let sd = tempfile::tempdir().unwrap();
        let store = Store::open_write(sd.path()).unwrap();
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "version": 1, "id": "x", "created": "", "kind": "manual", "root": "/",
            "guard_version": "", "entries": []
        }))
        .unwrap();
        for p in [
            "/etc/pam.d",
            "/etc/pam.d.bak",
            "/etc/pam.d/imap",
            "/etc/pam.d/x/y",
            "/etc/pam.dz",
        ] {
            m.entries.push(
                serde_json::from_value(serde_json::json!({
                    "path": p, "kind": "file", "mode": 420, "uid": 0, "gid": 0,
                    "mtime": {"sec": 0, "nsec": 0}, "size": 0, "dev": 0, "ino": 0,
                    "ctime": {"sec": 0, "nsec": 0}
                }))
                .unwrap(),
            );
        }
        m.sort();
        let r = Recorded {
            manifest: &m,
            store: &store,
        };
        assert_eq!(r.list(&SysPath::new("/etc/pam.d")), ["imap"]);
        assert_eq!(
            r.list(&SysPath::new("/etc")),
            ["pam.d", "pam.d.bak", "pam.dz"]
        );
    }

    #[test]
    fn live_content_is_what_was_hashed_never_what_replaced_it() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(etc.join("shadow"), "root:SHADOWHASH:1::::::\n").unwrap();
        std::fs::write(etc.join("app.conf"), "public\n").unwrap();
        let root = SysRoot::open(dir.path()).unwrap();
        let e: Entry = serde_json::from_value(serde_json::json!({
            "path": "/etc/app.conf", "kind": "file", "mode": 420, "uid": 0, "gid": 0,
            "mtime": {"sec": 0, "nsec": 0}, "size": 7, "dev": 0, "ino": 0,
            "ctime": {"sec": 0, "nsec": 0},
            "blake3": blake3::hash(b"public\n").to_hex().to_string()
        }))
        .unwrap();
        assert_eq!(live_content(&root, &e).unwrap(), b"public\n");
        // replaced by a symlink to a private file after the scan judged it
        std::fs::remove_file(etc.join("app.conf")).unwrap();
        std::os::unix::fs::symlink("shadow", etc.join("app.conf")).unwrap();
        assert_eq!(live_content(&root, &e), None);
        // or rewritten with other content: not what was judged either
        std::fs::remove_file(etc.join("app.conf")).unwrap();
        std::fs::write(etc.join("app.conf"), "other\n").unwrap();
        assert_eq!(live_content(&root, &e), None);
    }
}
