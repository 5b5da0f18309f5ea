//! Snapshots: their ids, their files (a header for fast listing, then the
//! manifest and its blake3), reading and checking them, and the commit that
//! makes one exist. Apart from the objects because a snapshot file is one
//! document, read by its header far more often than in full.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Result};
use rustix::fs::AtFlags;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{atomic_write_at, entries, io_ctx};
use super::{Header, Manifest, SnapshotKind, Store, FORMAT_VERSION};

/// A snapshot file as stored: a header for fast listing, the manifest's
/// blake3 (over the raw manifest text, so corruption is detectable without
/// re-serialising), then `"manifest":` and the manifest (appended as text
/// by [`Store::commit`], so it is serialised once and never re-parsed).
#[derive(Serialize)]
struct SnapshotHeadOut {
    format: &'static str,
    version: u32,
    #[serde(flatten)]
    header: Header,
    blake3: String,
}

#[derive(Deserialize)]
struct SnapshotDocIn {
    format: String,
    version: u32,
    #[serde(flatten)]
    header: Header,
    blake3: String,
    manifest: Box<RawValue>,
}

/// The header fields of a snapshot file, spelled out rather than
/// `#[serde(flatten)]`ed (flatten buffers every field first, and `list` and
/// the baseline search read many headers). Other fields are ignored.
#[derive(Deserialize)]
struct HeadIn {
    format: String,
    version: u32,
    id: String,
    created: String,
    kind: SnapshotKind,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    vms: Vec<String>,
    #[serde(default)]
    blake3: Option<String>,
}

impl HeadIn {
    fn header(self) -> Header {
        Header {
            id: self.id,
            created: self.created,
            kind: self.kind,
            label: self.label,
            vms: self.vms,
        }
    }
}

const FORMAT_NAME: &str = "guard-snapshot";

/// How a listed snapshot looks: its header, or why it cannot be read.
pub type Listed = (String, Result<Header, String>);

/// The UTC time a snapshot id encodes (`20261123-003318-891`), or `None`
/// for an id not made by [`Store::new_id`].
pub fn id_time(id: &str) -> Option<jiff::Timestamp> {
    let t = jiff::civil::DateTime::strptime("%Y%m%d-%H%M%S-%3f", id).ok()?;
    t.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

impl Store {
    /// Makes a snapshot exist: one `syncfs` for every object written so
    /// far (unless [`Self::sync_objects`] did it already), then the
    /// snapshot file, atomically. Only after this returns may the id be
    /// printed.
    pub fn commit(&self, m: &Manifest) -> Result<()> {
        self.sync_objects()?;
        // sized for the manifest up front (~220 bytes an entry) rather
        // than grown by doubling through a third of a megabyte
        let mut body = Vec::with_capacity(64 * 1024 + m.entries.len() * 256);
        serde_json::to_writer(&mut body, m)?;
        let head = SnapshotHeadOut {
            format: FORMAT_NAME,
            version: FORMAT_VERSION,
            header: Header::from(m),
            blake3: blake3::hash(&body).to_hex().to_string(),
        };
        // `{header…,"blake3":"…"}` with its closing brace replaced by the
        // manifest member: the document readers parse (FORMAT.md).
        let head = serde_json::to_vec(&head)?;
        let Some(head) = head.strip_suffix(b"}") else {
            bail!("internal: the snapshot header did not serialise as an object");
        };
        let shown = self.dir.join("snapshots");
        let dir = io_ctx(self.dir_in("snapshots"), || {
            format!("cannot open {}", shown.display())
        })?;
        atomic_write_at(
            &dir,
            &shown,
            &format!("{}.json", m.id),
            &[head, br#","manifest":"#, &body, b"}"],
            0o600,
        )
    }

    /// A new id: UTC time to the millisecond, so ids sort by time (see
    /// [`id_time`]).
    pub fn new_id(&self) -> String {
        let mut t = jiff::Timestamp::now();
        loop {
            let id = t.strftime("%Y%m%d-%H%M%S-%3f").to_string();
            let taken = self.base().is_ok_and(|b| {
                rustix::fs::statat(
                    b.as_fd(),
                    Self::snapshot_rel(&id).as_str(),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .is_ok()
            });
            if !taken {
                return id;
            }
            t += jiff::SignedDuration::from_millis(1);
        }
    }

    /// Every snapshot id on disk, oldest first.
    pub fn ids(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("snapshots");
        let names = match self.dir_in("snapshots").and_then(|fd| entries(&fd)) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return io_ctx(Err(e), || format!("cannot read store {}", dir.display())),
        };
        let mut ids: Vec<String> = names
            .into_iter()
            .filter_map(|(name, _)| {
                if name.starts_with('.') {
                    return None;
                }
                name.strip_suffix(".json").map(str::to_owned)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every snapshot with its header, or the reason it cannot be read.
    pub fn list(&self) -> Result<Vec<Listed>> {
        Ok(self
            .ids()?
            .into_iter()
            .map(|id| {
                let h = self.header(&id).map_err(|e| format!("{e:#}"));
                (id, h)
            })
            .collect())
    }

    /// Opens a snapshot file (see [`open_stored`]).
    fn open_doc(&self, id: &str) -> io::Result<File> {
        self.open_stored(&Self::snapshot_rel(id))
    }

    pub(super) fn read_doc_raw(&self, id: &str) -> io::Result<Vec<u8>> {
        let mut f = self.open_doc(id)?;
        let mut raw = Vec::new();
        f.read_to_end(&mut raw)?;
        Ok(raw)
    }

    fn read_doc(&self, id: &str) -> Result<Vec<u8>> {
        match self.read_doc_raw(id) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("no snapshot {id}"),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                bail!("snapshot {id} is corrupt: {e}")
            }
            Err(e) => io_ctx(Err(e), || format!("cannot read snapshot {id}")),
        }
    }

    /// The header of a snapshot without parsing its manifest: the header
    /// fields are written before `"manifest"`, and the byte sequence
    /// `,"manifest":` cannot occur inside a JSON string (its quotes would be
    /// escaped), so the prefix up to it, closed with `}`, is the header. A
    /// store with many hook snapshots is listed (and its baseline found) by
    /// reading a few hundred bytes of each.
    pub fn header(&self, id: &str) -> Result<Header> {
        let mut f = match self.open_doc(id) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("no snapshot {id}"),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                bail!("snapshot {id} is corrupt: {e}")
            }
            Err(e) => return io_ctx(Err(e), || format!("cannot read snapshot {id}")),
        };
        // A snapshot file always ends with the manifest's and the
        // document's closing braces: a truncated one is corrupt.
        let mut tail = [0u8; 2];
        use std::io::{Seek, SeekFrom};
        let whole =
            f.seek(SeekFrom::End(-2)).is_ok() && f.read_exact(&mut tail).is_ok() && &tail == b"}}";
        if !whole {
            bail!("snapshot {id} is corrupt: the file is truncated");
        }
        f.seek(SeekFrom::Start(0))?;
        // The header is a few hundred bytes: read 4 KiB at a time, up to
        // 64 KiB, rather than a large manifest's first 64 KiB every time.
        let mut head = Vec::with_capacity(4096);
        let mut prefix = None;
        while head.len() < 64 * 1024 {
            let before = head.len();
            (&mut f).take(4096).read_to_end(&mut head)?;
            let from = before.saturating_sub(11);
            if let Some(i) = head[from..]
                .windows(12)
                .position(|w| w == br#","manifest":"#)
            {
                prefix = Some([&head[..from + i], b"}"].concat());
                break;
            }
            if head.len() == before {
                break;
            }
        }
        let parsed: serde_json::Result<HeadIn> = match prefix {
            Some(p) => serde_json::from_slice(&p),
            None => serde_json::from_slice(&self.read_doc(id)?),
        };
        let h = parsed.map_err(|e| anyhow!("snapshot {id} is corrupt: {e}"))?;
        check_format(id, &h.format, h.version)?;
        Ok(h.header())
    }

    /// Loads a snapshot and checks the manifest against its recorded hash.
    pub fn load(&self, id: &str) -> Result<Manifest> {
        let raw = self.read_doc(id)?;
        parse_doc(id, &raw)
    }

    /// Resolves a user-given id: exact, or a unique prefix.
    pub fn resolve(&self, given: &str) -> Result<String> {
        if given.is_empty() || given.contains('/') {
            bail!("invalid snapshot id {given:?}");
        }
        let ids = self.ids()?;
        if ids.iter().any(|i| i == given) {
            return Ok(given.to_string());
        }
        let hits: Vec<&String> = ids.iter().filter(|i| i.starts_with(given)).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => bail!("no snapshot {given} in store {}", self.dir.display()),
            many => bail!(
                "snapshot id {given} is ambiguous: {}",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The newest `manual` or `pre` snapshot (DESIGN §2). A corrupt snapshot
    /// newer than every good candidate is an error, not skipped: silently
    /// falling back to an older baseline could hide damage.
    pub fn baseline(&self) -> Result<Option<String>> {
        // newest first, reading headers only until the baseline is found
        for id in self.ids()?.into_iter().rev() {
            match self.header(&id).map_err(|e| format!("{e:#}")) {
                Ok(h) if h.kind.is_baseline_candidate() => return Ok(Some(id)),
                Ok(_) => continue,
                Err(e) => bail!("{e}; run `guard verify` or `guard forget {id}`"),
            }
        }
        Ok(None)
    }

    /// The newest snapshot of any kind that reads; used as the stat cache.
    pub fn latest_readable(&self) -> Option<Manifest> {
        self.ids()
            .ok()?
            .iter()
            .rev()
            .find_map(|id| self.load(id).ok())
    }
}

/// A snapshot written by a newer guard: this one cannot read it, which says
/// nothing about whether it is whole (`verify` counts it as unreadable,
/// exit 3, not as corrupt).
#[derive(Debug)]
pub(super) struct NewerFormat(String);

impl std::fmt::Display for NewerFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NewerFormat {}

fn check_format(id: &str, format: &str, version: u32) -> Result<()> {
    if format != FORMAT_NAME {
        bail!("snapshot {id} is corrupt: not a guard snapshot");
    }
    if version > FORMAT_VERSION {
        return Err(NewerFormat(format!(
            "snapshot {id} has format version {version}; this guard reads up to {FORMAT_VERSION} (upgrade guard)"
        ))
        .into());
    }
    Ok(())
}

/// The manifest of a snapshot file parsed in one pass: the file is split at
/// the header/manifest boundary (see [`Store::header`]), the manifest's
/// bytes are hashed and parsed once. `None` when anything about the layout
/// is unexpected; the full parse below then decides.
fn parse_doc_fast(id: &str, raw: &[u8]) -> Option<Manifest> {
    const KEY: &[u8] = br#","manifest":"#;
    let i = raw.windows(KEY.len()).position(|w| w == KEY)?;
    let body = raw[i + KEY.len()..].trim_ascii_end().strip_suffix(b"}")?;
    let h: HeadIn = serde_json::from_slice(&[&raw[..i], b"}"].concat()).ok()?;
    check_format(id, &h.format, h.version).ok()?;
    if blake3::hash(body).to_hex().as_str() != h.blake3.as_deref()? {
        return None;
    }
    // (from the bytes: serde_json checks each string's UTF-8 as it reads
    // it, so a separate pass over the whole body would be a second read)
    let m: Manifest = serde_json::from_slice(body).ok()?;
    (m.id == h.id && m.kind == h.kind).then_some(m)
}

pub(super) fn parse_doc(id: &str, raw: &[u8]) -> Result<Manifest> {
    if let Some(m) = parse_doc_fast(id, raw) {
        return Ok(m);
    }
    let doc: SnapshotDocIn =
        serde_json::from_slice(raw).map_err(|e| anyhow!("snapshot {id} is corrupt: {e}"))?;
    check_format(id, &doc.format, doc.version)?;
    let actual = blake3::hash(doc.manifest.get().as_bytes()).to_hex();
    if actual.as_str() != doc.blake3 {
        bail!("snapshot {id} is corrupt: its manifest does not match its recorded blake3");
    }
    let m: Manifest = serde_json::from_str(doc.manifest.get())
        .map_err(|e| anyhow!("snapshot {id} is corrupt: {e}"))?;
    if m.id != doc.header.id || m.kind != doc.header.kind {
        bail!("snapshot {id} is corrupt: header and manifest disagree");
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use rustix::fs::Mode;

    use super::*;
    use crate::store::tests::{commit_kinds, manifest};
    use crate::store::ProblemKind;

    #[test]
    fn ids_encode_their_time() {
        let t = id_time("20261123-003318-891").unwrap();
        assert_eq!(t.to_string(), "2026-11-23T00:33:18.891Z");
        assert!(id_time("not-an-id").is_none());
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let now = jiff::Timestamp::now();
        let made = id_time(&s.new_id()).unwrap();
        assert!(now.duration_since(made).abs() < jiff::SignedDuration::from_secs(5));
    }

    #[test]
    fn baseline_skips_timer_post_and_safety() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        commit_kinds(
            &s,
            &[
                ("20260101-000000-000", SnapshotKind::Manual),
                ("20260102-000000-000", SnapshotKind::Pre),
                ("20260103-000000-000", SnapshotKind::Post),
                ("20260104-000000-000", SnapshotKind::Timer),
                ("20260105-000000-000", SnapshotKind::Safety),
            ],
        );
        assert_eq!(
            s.baseline().unwrap().as_deref(),
            Some("20260102-000000-000")
        );
        assert_eq!(s.resolve("20260104").unwrap(), "20260104-000000-000");
        assert!(s.resolve("2026010").is_err());
    }

    /// A fifo or a symlink where a snapshot file belongs is damage that
    /// verify, list and load report at once: never waited on, never
    /// followed (to an intact copy elsewhere, or out of the store).
    #[test]
    fn a_fifo_or_symlink_in_a_snapshots_place_is_corrupt_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let m = manifest("20260101-000000-000", SnapshotKind::Manual, &[], &s);
        s.commit(&m).unwrap();
        let path = s.snapshot_path(&m.id);
        let copy = d.path().join("copy.json");
        fs::copy(&path, &copy).unwrap();
        fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let check = |what: &str| {
            let rep = s.verify(std::slice::from_ref(&m.id), &crate::ui::NoProgress);
            assert_eq!(rep.problems.len(), 1, "{what}: {rep:?}");
            assert_eq!(rep.problems[0].kind, ProblemKind::Corrupt, "{what}");
            let err = format!("{:#}", s.load(&m.id).unwrap_err());
            assert!(err.contains("is corrupt"), "{what}: {err}");
            let err = format!("{:#}", s.header(&m.id).unwrap_err());
            assert!(err.contains("is corrupt"), "{what}: {err}");
        };
        check("fifo");
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&copy, &path).unwrap();
        check("symlink");
    }

    /// A snapshot a newer guard wrote is not damage: this guard cannot
    /// read it, so verify cannot decide (exit 3), and says to upgrade.
    #[test]
    fn a_snapshot_of_a_newer_format_is_unreadable_not_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let m = manifest("20260101-000000-000", SnapshotKind::Manual, &[], &s);
        s.commit(&m).unwrap();
        let path = s.snapshot_path(&m.id);
        let doc = fs::read_to_string(&path).unwrap();
        let newer = doc.replacen(
            &format!("\"version\":{FORMAT_VERSION}"),
            &format!("\"version\":{}", FORMAT_VERSION + 1),
            1,
        );
        assert_ne!(doc, newer);
        fs::write(&path, newer).unwrap();
        let rep = s.verify(std::slice::from_ref(&m.id), &crate::ui::NoProgress);
        assert_eq!(rep.problems.len(), 1, "{rep:?}");
        assert_eq!(rep.problems[0].kind, ProblemKind::Unreadable);
        assert!(rep.problems[0].problem.contains("upgrade guard"), "{rep:?}");
        assert!(!rep.damaged());
    }
}
