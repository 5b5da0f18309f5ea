//! What the snapshots still need: `verify` re-hashes it, `forget` and
//! `prune` remove the snapshots dropped and every object no other snapshot
//! names. Apart from writing and reading because it is the one part of the
//! store that deletes, decided from every manifest at once.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{anyhow, bail, Context, Result};
use foldhash::HashSet;
use rustix::fs::{AtFlags, FileType};
use serde::Serialize;

use super::snapshots::{parse_doc, NewerFormat};
use super::{dir_beneath, entries, io_ctx};
use super::{SnapshotKind, Store, VmRecord};

/// An object as `forget` finds it: its fan-out directory and its name there.
type ObjectName = (String, String);

/// The result of `verify`.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub snapshots: Vec<String>,
    pub objects_checked: u64,
    pub problems: Vec<VerifyProblem>,
}

#[derive(Debug, Serialize)]
pub struct VerifyProblem {
    pub snapshot: String,
    /// The object hash, or null for a manifest problem.
    pub object: Option<String>,
    pub kind: ProblemKind,
    pub problem: String,
    pub paths: Vec<String>,
}

/// What `verify` found wrong with an object or manifest. `Missing` and
/// `Corrupt` are damage (exit 2); `Unreadable` (permission denied, an I/O
/// error) means verify could not look, which proves nothing either way
/// (exit 3, DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Missing,
    Corrupt,
    Unreadable,
}

impl VerifyReport {
    /// Whether any problem is known damage, as opposed to something verify
    /// could not read.
    pub fn damaged(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.kind != ProblemKind::Unreadable)
    }

    pub fn unreadable(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Unreadable)
            .count()
    }
}

/// What `forget`/`prune` would remove, and then did (their JSON, with
/// `dry_run`, is made in `app::show_gc`).
#[derive(Debug, Default)]
pub struct GcReport {
    pub snapshots: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
    /// Guests cloned with the dropped snapshots (`--vm`). forget/prune
    /// never delete a guest: the clones stay, and this is the last record
    /// of them, so it is said (with how to remove them).
    pub kept_clones: Vec<KeptClone>,
    /// What the plan was decided from: the snapshots kept and the objects
    /// found unneeded. Under the lock, `forget_as_planned` reuses it when
    /// the store still lists exactly the same snapshots (a snapshot never
    /// changes once listed, so the same ones need the same objects),
    /// instead of reading every kept manifest a second time.
    basis: Option<GcBasis>,
}

#[derive(Debug)]
struct GcBasis {
    dropped: Vec<String>,
    kept: Vec<String>,
    objects: Vec<(ObjectName, u64)>,
}

/// A guest clone that outlives its dropped snapshot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeptClone {
    pub snapshot: String,
    pub domain: String,
    pub clone: String,
    pub uri: String,
    /// The clone's disk copies and nvram (full copies: they take space).
    pub files: Vec<String>,
    /// How to remove it by hand.
    pub remove: String,
}

impl KeptClone {
    fn of(snapshot: &str, r: &VmRecord) -> KeptClone {
        let mut files: Vec<String> = r.disks.iter().map(|d| d.copy.clone()).collect();
        files.extend(r.nvram.iter().cloned());
        let mut remove = format!("virsh -c {} undefine --nvram {}", r.uri, r.clone);
        if !r.disks.is_empty() {
            remove.push_str("; rm --");
            for d in &r.disks {
                remove.push(' ');
                remove.push_str(&d.copy);
            }
        }
        KeptClone {
            snapshot: snapshot.to_string(),
            domain: r.domain.clone(),
            clone: r.clone.clone(),
            uri: r.uri.clone(),
            files,
            remove,
        }
    }
}

impl Store {
    /// Re-hashes every object and manifest the given snapshots need.
    ///
    /// One manifest at a time: each is read, its objects checked, and it
    /// is dropped before the next is read. Holding them all made verify's
    /// memory the sum of every manifest (1.8 GB for 1,000 snapshots of a
    /// 2,500-entry /etc); what is kept across them is one verdict per
    /// distinct object. Problems are reported as before: the manifests
    /// that could not be read first, then the objects, snapshot by
    /// snapshot.
    pub fn verify(&self, ids: &[String], progress: &dyn crate::ui::Progress) -> VerifyReport {
        let mut rep = VerifyReport::default();
        let mut good: foldhash::HashMap<String, Result<(), (ProblemKind, String)>> =
            foldhash::HashMap::default();
        let mut object_problems = Vec::new();
        // The bar counts the objects each snapshot needs; the count of
        // those not read yet is estimated from the ones read so far.
        let (mut counted, mut loaded_n) = (0u64, 0u64);
        for (i, id) in ids.iter().enumerate() {
            rep.snapshots.push(id.clone());
            // Read here rather than through `load`, to tell a manifest that
            // cannot be read from one that reads and is wrong.
            let loaded = match self.read_doc_raw(id) {
                Ok(raw) => parse_doc(id, &raw).map_err(|e| {
                    let kind = if e.is::<NewerFormat>() {
                        ProblemKind::Unreadable
                    } else {
                        ProblemKind::Corrupt
                    };
                    (kind, format!("{e:#}"))
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err((ProblemKind::Missing, format!("no snapshot {id}")))
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => Err((
                    ProblemKind::Corrupt,
                    format!("snapshot {id} is corrupt: {e}"),
                )),
                Err(e) => Err((
                    ProblemKind::Unreadable,
                    format!("snapshot {id} is unreadable: {e}"),
                )),
            };
            let m = match loaded {
                Ok(m) => m,
                Err((kind, problem)) => {
                    rep.problems.push(VerifyProblem {
                        snapshot: id.clone(),
                        object: None,
                        kind,
                        problem,
                        paths: vec![],
                    });
                    continue;
                }
            };
            let objects = m.objects();
            counted += objects.len() as u64;
            loaded_n += 1;
            let left = (ids.len() - i - 1) as u64;
            progress.set_length(counted + counted / loaded_n * left);
            for (hash, paths) in objects {
                let res = good
                    .entry(hash.to_string())
                    .or_insert_with(|| {
                        rep.objects_checked += 1;
                        self.check_object(hash)
                    })
                    .clone();
                progress.inc(1);
                if let Err((kind, problem)) = res {
                    object_problems.push(VerifyProblem {
                        snapshot: m.id.clone(),
                        object: Some(hash.to_string()),
                        kind,
                        problem,
                        paths: paths.iter().map(|p| p.to_string()).collect(),
                    });
                }
            }
        }
        progress.set_length(counted);
        rep.problems.extend(object_problems);
        progress.finish();
        // Verify takes no lock (a long one must not hold off a hook's
        // snapshot), so a `forget` may have removed a snapshot listed
        // above, and then its objects, while this ran. Such a snapshot is
        // not damaged, it is gone: it is not reported. Snapshot files go
        // before their objects, so one that is still listed now had its
        // problems while listed.
        if let Ok(now) = self.ids() {
            let listed = |id: &String| now.binary_search(id).is_ok();
            rep.snapshots.retain(listed);
            rep.problems.retain(|p| listed(&p.snapshot));
        }
        rep
    }

    /// Re-hashes one object. Only what verify saw decides damage: an
    /// object that is not there (or whose fan-out name is not a directory)
    /// is missing, one that reads with other content, or is not a regular
    /// file, is corrupt. One it cannot open or read (EACCES as a user
    /// without root's rights, EIO) is unreadable: its content is unknown.
    fn check_object(&self, hash: &str) -> Result<(), (ProblemKind, String)> {
        let unreadable = |e: io::Error| (ProblemKind::Unreadable, format!("unreadable: {e}"));
        let mut f = match self.open_stored(&Self::object_rel(hash)) {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err((ProblemKind::Missing, "missing".into()))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err((ProblemKind::Corrupt, format!("corrupt: {e}")))
            }
            Err(e) => return Err(unreadable(e)),
        };
        let mut h = blake3::Hasher::new();
        if let Err(e) = io::copy(&mut f, &mut h) {
            return Err(unreadable(e));
        }
        if h.finalize().to_hex().as_str() != hash {
            return Err((
                ProblemKind::Corrupt,
                "corrupt: content does not match its hash".into(),
            ));
        }
        Ok(())
    }

    /// What [`Self::forget`] of `ids` would remove, removing nothing: the
    /// snapshots (each once) and every object no other snapshot needs,
    /// with their bytes. Refused like `forget` itself.
    pub fn forget_plan(&self, ids: &[String]) -> Result<GcReport> {
        let (ids, kept, objects) = self.gc_plan(ids, None)?;
        let kept_clones = self.clones_of(&ids);
        Ok(GcReport {
            objects: objects.len() as u64,
            bytes: objects.iter().map(|(_, n)| n).sum(),
            kept_clones,
            basis: Some(GcBasis {
                dropped: ids.clone(),
                kept,
                objects,
            }),
            snapshots: ids,
        })
    }

    /// [`Self::forget`] of `ids` after `plan` (a [`Self::forget_plan`]
    /// made without the lock) was shown: the same, but when the store
    /// lists the snapshots the plan was made from, its objects are taken
    /// from the plan instead of reading every kept manifest again.
    pub fn forget_as_planned(&self, ids: &[String], plan: &GcReport) -> Result<GcReport> {
        self.forget_with(ids, plan.basis.as_ref())
    }

    /// Removes snapshot files, then every object no remaining snapshot
    /// needs. Which objects those are is decided first, from every other
    /// manifest: when one cannot be read (it may need any object) or an
    /// id is not there, nothing at all is removed. The removed snapshot
    /// files are made durable before any object goes, so a crash or power
    /// cut at any moment leaves every listed snapshot whole.
    pub fn forget(&self, ids: &[String]) -> Result<GcReport> {
        self.forget_with(ids, None)
    }

    fn forget_with(&self, ids: &[String], basis: Option<&GcBasis>) -> Result<GcReport> {
        if !self.is_writable() {
            bail!("internal: forget on a read-only store handle");
        }
        let (ids, _, objects) = self.gc_plan(ids, basis)?;
        // read before the snapshot files go: they are the only record
        let kept_clones = self.clones_of(&ids);
        let snapshots = io_ctx(self.dir_in("snapshots"), || {
            format!("cannot open {}", self.dir.join("snapshots").display())
        })?;
        for id in &ids {
            io_ctx(
                rustix::fs::unlinkat(&snapshots, format!("{id}.json").as_str(), AtFlags::empty())
                    .map_err(io::Error::from),
                || format!("cannot remove snapshot {id}"),
            )?;
        }
        if !ids.is_empty() {
            // An unsynced unlink of a snapshot file can be undone by a
            // power cut while the object unlinks below are not: the
            // snapshot would come back without its objects.
            io_ctx(
                rustix::fs::fsync(&snapshots).map_err(io::Error::from),
                || {
                    format!(
                        "cannot sync store {}; snapshots removed, no object removed",
                        self.dir.display()
                    )
                },
            )?;
        }
        let mut rep = GcReport {
            snapshots: ids,
            kept_clones,
            ..GcReport::default()
        };
        let objects_dir = self.dir_in("objects");
        let mut fan: Option<(String, OwnedFd)> = None;
        for ((f, name), size) in objects {
            let Ok(all) = &objects_dir else { break };
            if fan.as_ref().is_none_or(|(open, _)| *open != f) {
                fan = dir_beneath(all.as_fd(), &f).ok().map(|fd| (f, fd));
            }
            let Some((_, fd)) = &fan else { continue };
            if rustix::fs::unlinkat(fd, name.as_str(), AtFlags::empty()).is_ok() {
                rep.objects += 1;
                rep.bytes += size;
            }
        }
        Ok(rep)
    }

    /// The guest clones recorded by the snapshots `ids` (only those whose
    /// header names one are read in full). A manifest that cannot be read
    /// still gives the header's `DOMAIN -> CLONE`.
    fn clones_of(&self, ids: &[String]) -> Vec<KeptClone> {
        let mut out = Vec::new();
        for id in ids {
            let Ok(h) = self.header(id) else { continue };
            if h.vms.is_empty() {
                continue;
            }
            match self.load(id) {
                Ok(m) => out.extend(m.vms.iter().map(|r| KeptClone::of(id, r))),
                Err(_) => out.extend(h.vms.iter().map(|v| {
                    let (domain, clone) = v.split_once(" -> ").unwrap_or(("", v));
                    KeptClone {
                        snapshot: id.clone(),
                        domain: domain.to_string(),
                        clone: clone.to_string(),
                        uri: String::new(),
                        files: Vec::new(),
                        remove: format!(
                            "virsh undefine --nvram {clone} (and delete its disk copies)"
                        ),
                    }
                })),
            }
        }
        out
    }

    /// The snapshots of `ids` (sorted, each once: `forget ID ID` removes
    /// it once), the snapshots kept, and the objects that go. `basis`, a
    /// plan made earlier, is reused when it dropped and kept exactly these.
    #[allow(clippy::type_complexity)]
    fn gc_plan(
        &self,
        ids: &[String],
        basis: Option<&GcBasis>,
    ) -> Result<(Vec<String>, Vec<String>, Vec<(ObjectName, u64)>)> {
        let drop: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let all = self.ids()?;
        if let Some(gone) = drop.iter().find(|id| !all.iter().any(|a| a == *id)) {
            bail!(
                "no snapshot {gone} in store {}; nothing removed",
                self.dir.display()
            );
        }
        let dropped: Vec<String> = drop.iter().map(|s| s.to_string()).collect();
        let kept: Vec<String> = all
            .into_iter()
            .filter(|id| !drop.contains(id.as_str()))
            .collect();
        if let Some(b) = basis.filter(|b| b.dropped == dropped && b.kept == kept) {
            // Objects stored since the plan belong to no listed snapshot
            // (a snapshot that committed would be listed): they stay, for
            // the next forget to collect.
            return Ok((dropped, kept, b.objects.clone()));
        }
        let needed = self.objects_needed_by(&kept)?;
        let objects = self.unreferenced(&needed);
        Ok((dropped, kept, objects))
    }

    /// Every object the snapshots `ids` name, their manifests read on
    /// every core (with 1,000 snapshots that read is most of a `forget`).
    /// A manifest that cannot be read may need any object: that is an
    /// error, and the caller removes nothing.
    fn objects_needed_by(&self, ids: &[String]) -> Result<HashSet<String>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = ids.len().div_ceil(cores).max(1);
        std::thread::scope(|s| {
            let workers: Vec<_> = ids
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || -> Result<HashSet<String>> {
                        let mut needed = HashSet::default();
                        for id in chunk {
                            let m = self.load(id).with_context(|| {
                                format!("cannot decide which objects are still needed (run `guard verify`, or `guard forget {id}`); nothing removed")
                            })?;
                            needed.extend(m.entries.into_iter().filter_map(|e| e.blake3));
                        }
                        Ok(needed)
                    })
                })
                .collect();
            let mut needed = HashSet::default();
            for w in workers {
                let part = w
                    .join()
                    .map_err(|_| anyhow!("internal: a manifest reader panicked"))??;
                if needed.is_empty() {
                    needed = part;
                } else {
                    needed.extend(part);
                }
            }
            Ok(needed)
        })
    }

    /// Which snapshots the retention policy drops (DESIGN §4): all but the
    /// newest `keep` of each automatic kind (`pre`, `post`, `timer`, and
    /// `safety`, which `restore` takes); `manual` ones are always kept,
    /// and so are the baseline (the newest `manual` or `pre`, which
    /// `check` compares against: `--keep 0` must not change what it says)
    /// and the snapshots in `pinned` (what an unfinished playbook walk
    /// will check or restore against).
    pub fn prune_plan(&self, keep: usize, pinned: &BTreeSet<String>) -> Result<Vec<String>> {
        let mut by_kind: BTreeMap<SnapshotKind, Vec<String>> = BTreeMap::new();
        let mut baseline = None;
        for (id, h) in self.list()? {
            let h = h.map_err(|e| anyhow!("{e}; run `guard verify` before pruning"))?;
            if h.kind.is_baseline_candidate() {
                // (ids come oldest first)
                baseline = Some(id.clone());
            }
            by_kind.entry(h.kind).or_default().push(id);
        }
        let mut drop = Vec::new();
        for (kind, mut ids) in by_kind {
            if kind == SnapshotKind::Manual {
                continue;
            }
            ids.sort();
            if ids.len() > keep {
                drop.extend(ids[..ids.len() - keep].iter().cloned());
            }
        }
        drop.retain(|id| Some(id) != baseline.as_ref() && !pinned.contains(id));
        drop.sort();
        Ok(drop)
    }

    /// Objects not in `needed`, with their sizes, fan-out directory by
    /// fan-out directory. A fan-out directory that cannot be read is passed
    /// over: nothing in it is removed; so is anything else there (a symlink
    /// to a directory would have its target's files removed).
    fn unreferenced(&self, needed: &HashSet<String>) -> Vec<(ObjectName, u64)> {
        let mut out = Vec::new();
        let Ok(objects) = self.dir_in("objects") else {
            return out;
        };
        for (fan, kind) in entries(&objects).unwrap_or_default() {
            if kind != FileType::Directory && kind != FileType::Unknown {
                continue;
            }
            let Ok(fan_fd) = dir_beneath(objects.as_fd(), &fan) else {
                continue;
            };
            for (obj, _) in entries(&fan_fd).unwrap_or_default() {
                if !needed.contains(&format!("{fan}{obj}")) {
                    let size = rustix::fs::statat(&fan_fd, obj.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| st.st_size as u64)
                        .unwrap_or(0);
                    out.push(((fan.clone(), obj), size));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    use rustix::fs::Mode;

    use super::*;
    use crate::store::tests::{commit_kinds, committed, manifest};

    #[test]
    fn corrupt_manifest_and_object_are_detected() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let m = committed(
            "20260101-000000-000",
            SnapshotKind::Manual,
            &[("/etc/a", "A"), ("/etc/b", "B")],
            &s,
        );
        assert_eq!(s.load(&m.id).unwrap(), m);
        let ids = vec![m.id.clone()];
        assert!(s.verify(&ids, &crate::ui::NoProgress).problems.is_empty());

        // flip one byte of an object
        let h = m.entries[0].blake3.clone().unwrap();
        let p = s.object_path(&h);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, b"X").unwrap();
        let rep = s.verify(&ids, &crate::ui::NoProgress);
        assert_eq!(rep.problems.len(), 1);
        assert_eq!(rep.problems[0].paths, vec!["/etc/a"]);

        // flip one byte inside the manifest
        let sp = s.snapshot_path(&m.id);
        let text = fs::read_to_string(&sp).unwrap().replace("/etc/b", "/etc/c");
        fs::write(&sp, text).unwrap();
        let err = s.load(&m.id).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }

    /// An object path that holds a directory, or whose fan-out name is a
    /// file, is damage verify can see (exit 2), not an error that leaves
    /// the object undecided like EACCES (exit 3).
    #[test]
    fn an_object_that_is_not_a_file_is_damage_not_unreadable() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let m = committed(
            "20260101-000000-000",
            SnapshotKind::Manual,
            &[("/etc/a", "A")],
            &s,
        );
        let ids = vec![m.id.clone()];
        let kinds = || {
            let rep = s.verify(&ids, &crate::ui::NoProgress);
            assert!(rep.damaged() && rep.unreadable() == 0, "{rep:?}");
            rep.problems.iter().map(|p| p.kind).collect::<Vec<_>>()
        };
        let p = s.object_path(m.entries[0].blake3.as_deref().unwrap());
        fs::remove_file(&p).unwrap();
        fs::create_dir(&p).unwrap();
        assert_eq!(kinds(), [ProblemKind::Corrupt]);
        // a fifo is reported at once, not waited on for a writer
        fs::remove_dir(&p).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(kinds(), [ProblemKind::Corrupt]);
        // a symlink to an intact copy elsewhere is not followed
        let elsewhere = d.path().join("elsewhere");
        fs::write(&elsewhere, "A").unwrap();
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &p).unwrap();
        assert_eq!(kinds(), [ProblemKind::Corrupt]);
        let fan = p.parent().unwrap();
        fs::remove_dir_all(fan).unwrap();
        fs::write(fan, b"").unwrap();
        assert_eq!(kinds(), [ProblemKind::Missing]);
    }

    #[test]
    fn forget_takes_a_snapshot_named_twice_once() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let a = committed(
            "20260101-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "A")],
            &s,
        );
        let b = committed(
            "20260102-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "B")],
            &s,
        );
        // `guard forget ID ID` (or an id and its prefix, resolved): the
        // second removal found nothing and failed before the objects went
        let rep = s.forget(&[a.id.clone(), a.id.clone()]).unwrap();
        assert_eq!(rep.snapshots, vec![a.id.clone()]);
        assert_eq!(rep.objects, 1);
        assert_eq!(s.ids().unwrap(), vec![b.id.clone()]);
        assert!(s
            .verify(&s.ids().unwrap(), &crate::ui::NoProgress)
            .problems
            .is_empty());
    }

    #[test]
    fn forget_removes_nothing_while_another_manifest_cannot_be_read() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let a = committed(
            "20260101-000000-000",
            SnapshotKind::Manual,
            &[("/etc/a", "A")],
            &s,
        );
        let b = committed(
            "20260102-000000-000",
            SnapshotKind::Timer,
            &[("/etc/b", "B")],
            &s,
        );
        // a flipped byte in b's manifest: its header still reads
        let sp = s.snapshot_path(&b.id);
        let text = fs::read_to_string(&sp).unwrap().replace("/etc/b", "/etc/c");
        fs::write(&sp, text).unwrap();
        let err = s.forget(std::slice::from_ref(&a.id)).unwrap_err();
        assert!(format!("{err:#}").contains("corrupt"), "{err:#}");
        assert_eq!(
            s.ids().unwrap(),
            vec![a.id.clone(), b.id.clone()],
            "refused, so nothing removed"
        );
        assert_eq!(
            s.read_object(a.entries[0].blake3.as_deref().unwrap())
                .unwrap(),
            b"A"
        );
        assert_eq!(
            s.read_object(b.entries[0].blake3.as_deref().unwrap())
                .unwrap(),
            b"B"
        );
        assert!(
            s.forget_plan(std::slice::from_ref(&a.id)).is_err(),
            "the dry run says so too"
        );
        // the corrupt one itself can be forgotten: nothing else is unreadable
        let rep = s.forget(std::slice::from_ref(&b.id)).unwrap();
        assert_eq!(rep.objects, 1);
        assert_eq!(s.ids().unwrap(), vec![a.id.clone()]);
    }

    #[test]
    fn forget_refuses_an_id_that_is_not_there_and_removes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let a = committed(
            "20260101-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "A")],
            &s,
        );
        let err = s
            .forget(&[a.id.clone(), "20260102-000000-000".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no snapshot 20260102-000000-000"), "{err}");
        assert_eq!(s.ids().unwrap(), vec![a.id.clone()]);
    }

    /// Two committed snapshots: `a` (`/etc/a` 4 bytes) and `b` (`/etc/a`
    /// 1 byte), both with the same `/etc/s`.
    fn two_sharing(s: &Store) -> (crate::store::Manifest, crate::store::Manifest) {
        let a = committed(
            "20260101-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "AAAA"), ("/etc/s", "same")],
            s,
        );
        let b = committed(
            "20260102-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "B"), ("/etc/s", "same")],
            s,
        );
        (a, b)
    }

    #[test]
    fn the_plan_counts_what_forget_then_removes() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let (a, _) = two_sharing(&s);
        let plan = s.forget_plan(std::slice::from_ref(&a.id)).unwrap();
        assert_eq!(
            (plan.objects, plan.bytes),
            (1, 4),
            "the shared object stays"
        );
        assert_eq!(s.ids().unwrap().len(), 2, "a plan removes nothing");
        let rep = s.forget(std::slice::from_ref(&a.id)).unwrap();
        assert_eq!(
            (rep.snapshots, rep.objects, rep.bytes),
            (plan.snapshots, 1, 4)
        );
    }

    /// The plan shown before the confirmation is reused under the lock
    /// only while the store lists the same snapshots: one committed in
    /// between (a hook's, during the question) that needs an object the
    /// plan found unneeded keeps it.
    #[test]
    fn a_shown_plan_is_reused_only_while_the_store_is_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        let (a, b) = two_sharing(&s);
        let plan = s.forget_plan(std::slice::from_ref(&a.id)).unwrap();
        assert_eq!(plan.objects, 1);
        // a new snapshot holds A's content again, committed after the plan
        let c = committed(
            "20260103-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "AAAA")],
            &s,
        );
        let rep = s
            .forget_as_planned(std::slice::from_ref(&a.id), &plan)
            .unwrap();
        assert_eq!(rep.objects, 0, "the plan's object is needed again");
        assert_eq!(
            s.read_object(c.entries[0].blake3.as_deref().unwrap())
                .unwrap(),
            b"AAAA"
        );

        // unchanged since its plan: the plan's objects go, the rest stays
        let plan = s.forget_plan(std::slice::from_ref(&b.id)).unwrap();
        // ("B" and "same": c holds only A's content)
        assert_eq!((plan.objects, plan.bytes), (2, 5));
        let rep = s
            .forget_as_planned(std::slice::from_ref(&b.id), &plan)
            .unwrap();
        assert_eq!((rep.objects, rep.bytes), (2, 5));
        assert_eq!(s.ids().unwrap(), vec![c.id.clone()]);
        assert!(s
            .read_object(b.entries[0].blake3.as_deref().unwrap())
            .is_err());
        assert_eq!(
            s.read_object(c.entries[0].blake3.as_deref().unwrap())
                .unwrap(),
            b"AAAA"
        );
        // a plan for other snapshots than those forgotten is not reused
        let plan = s.forget_plan(&[]).unwrap();
        assert!(
            s.forget_as_planned(std::slice::from_ref(&c.id), &plan)
                .unwrap()
                .objects
                >= 1
        );
        assert!(s.ids().unwrap().is_empty());
    }

    #[test]
    fn forget_removes_nothing_through_a_symlink_in_objects() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(&d.path().join("store")).unwrap();
        let a = committed(
            "20260101-000000-000",
            SnapshotKind::Timer,
            &[("/etc/a", "A")],
            &s,
        );
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("precious"), b"not the store's").unwrap();
        std::os::unix::fs::symlink(&elsewhere, s.dir().join("objects").join("zz")).unwrap();
        let rep = s.forget(std::slice::from_ref(&a.id)).unwrap();
        assert_eq!(rep.objects, 1);
        assert!(elsewhere.join("precious").exists());
    }

    #[test]
    fn prune_never_drops_the_baseline_nor_a_pinned_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        commit_kinds(
            &s,
            &[
                ("20260101-000000-000", SnapshotKind::Manual),
                ("20260102-000000-000", SnapshotKind::Pre),
                ("20260103-000000-000", SnapshotKind::Pre),
                ("20260104-000000-000", SnapshotKind::Post),
                ("20260105-000000-000", SnapshotKind::Timer),
                ("20260106-000000-000", SnapshotKind::Safety),
            ],
        );
        assert_eq!(
            s.baseline().unwrap().as_deref(),
            Some("20260103-000000-000")
        );
        // --keep 0: every automatic one goes but the newest pre, which
        // `check` compares against by default
        let none = BTreeSet::new();
        assert_eq!(
            s.prune_plan(0, &none).unwrap(),
            vec![
                "20260102-000000-000",
                "20260104-000000-000",
                "20260105-000000-000",
                "20260106-000000-000"
            ]
        );
        // a snapshot an unfinished playbook walk will restore from stays
        let pinned = BTreeSet::from(["20260102-000000-000".to_string()]);
        assert_eq!(s.prune_plan(1, &pinned).unwrap(), Vec::<String>::new());
    }

    /// `verify` takes no lock (a long verify must not hold off the hooks'
    /// snapshots), so a `forget` may remove a snapshot it has listed, and
    /// that snapshot's objects, while it runs.
    #[test]
    fn verify_does_not_report_a_snapshot_forgotten_while_it_ran() {
        struct ForgetOnFirstStep<'a>(&'a Store, String, AtomicBool);
        impl crate::ui::Progress for ForgetOnFirstStep<'_> {
            fn set_length(&self, _: u64) {}
            fn inc(&self, _: u64) {
                if !self.2.swap(true, Ordering::SeqCst) {
                    self.0.forget(std::slice::from_ref(&self.1)).unwrap();
                }
            }
            fn set_message(&self, _: &str) {}
            fn finish(&self) {}
        }
        let d = tempfile::tempdir().unwrap();
        let w = Store::open_write(d.path()).unwrap();
        let data = [("/etc/a", "A"), ("/etc/b", "B"), ("/etc/c", "C")];
        let a = manifest("20260101-000000-000", SnapshotKind::Timer, &data, &w);
        let b = manifest(
            "20260102-000000-000",
            SnapshotKind::Manual,
            &[("/etc/k", "K")],
            &w,
        );
        w.commit(&a).unwrap();
        w.commit(&b).unwrap();
        let r = Store::open_read(d.path()).unwrap();
        let rep = r.verify(
            &r.ids().unwrap(),
            &ForgetOnFirstStep(&w, a.id.clone(), AtomicBool::new(false)),
        );
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        assert_eq!(rep.snapshots, vec![b.id.clone()]);
        // a snapshot still listed keeps its problems
        let k = b.entries[0].blake3.clone().unwrap();
        fs::remove_file(w.object_path(&k)).unwrap();
        let rep = r.verify(&r.ids().unwrap(), &crate::ui::NoProgress);
        assert_eq!(rep.problems.len(), 1);
        assert_eq!(rep.problems[0].object.as_deref(), Some(k.as_str()));
    }

    #[test]
    fn prune_keeps_manual_and_newest_of_each_kind_and_drops_orphans() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open_write(d.path()).unwrap();
        for i in 0..4 {
            let id = format!("2026010{i}-000000-000");
            let kind = if i == 0 {
                SnapshotKind::Manual
            } else {
                SnapshotKind::Timer
            };
            s.commit(&manifest(&id, kind, &[("/etc/x", &id)], &s))
                .unwrap();
        }
        let plan = s.prune_plan(1, &BTreeSet::new()).unwrap();
        assert_eq!(plan, vec!["20260101-000000-000", "20260102-000000-000"]);
        let rep = s.forget(&plan).unwrap();
        assert_eq!(rep.objects, 2);
        assert_eq!(
            s.ids().unwrap(),
            vec!["20260100-000000-000", "20260103-000000-000"]
        );
    }
}
