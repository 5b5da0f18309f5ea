//! guard's own disk copy: sparse-aware (SEEK_DATA/SEEK_HOLE: holes are
//! never read nor written), hashing source and target with blake3 while it
//! copies, so the clone is verified before it is defined without reading
//! either disk a second time.
//!
//! The digest is blake3 over the disk's sparse layout: every data piece
//! framed with its offset and length, every hole as its offset and length
//! (zeros are not fed through blake3: for a mostly empty disk that alone
//! would cost more than the copy). The source digest is taken from the
//! bytes read; the target digest from the bytes read back from the target
//! right after they were written, so a short write, a wrong offset or a
//! device that drops data shows as a mismatch. Holes on the target are
//! holes of a freshly created file, or zeroed ranges of a device.
//!
//! Writeback of each chunk is started as soon as it is written
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so the disk writes while the
//! copy and the hashing go on and the closing `fdatasync` — which stays the
//! durability guarantee — finds little left to do. On the 2 GiB / 500 MB
//! benchmark that halved the verified, synced clone's time (README, vm).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::SeekFrom;

use crate::ui::Progress;

// 1 MiB, not more: a chunk then still sits in the CPU cache when it is
// written and hashed; 4 MiB chunks measured ~15% slower on the benchmark.
const CHUNK: usize = 1 << 20;
static ZEROS: [u8; 64 << 10] = [0u8; 64 << 10];

/// The result of one verified copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    /// logical size of the disk
    pub size: u64,
    /// bytes of data actually read and written (holes excluded)
    pub data_bytes: u64,
    pub source_blake3: String,
    pub target_blake3: String,
    /// wall time of the whole copy, verification and sync included
    pub seconds: f64,
    /// the part of `seconds` spent waiting for the target to reach the disk
    /// (starting writeback, the final fdatasync): what a copy that does not
    /// sync would save, reported so benchmarks can compare fairly
    pub sync_seconds: f64,
}

enum Msg {
    Data(u64, Vec<u8>),
    /// a range just written to the target: the target's hasher reads it
    /// back itself, off the copying thread's critical path
    Written(u64, usize),
    Hole(u64, u64),
}

/// Hashes what it is sent and hands each data buffer back on `back`, so the
/// copy reuses a few buffers instead of faulting in fresh pages per chunk.
/// Each piece is framed with its kind, offset and length, so the digest
/// pins down where every byte of data sits and how long every hole is.
fn hasher_thread(
    rx: Receiver<Msg>,
    back: SyncSender<Vec<u8>>,
    target: Option<File>,
) -> std::thread::JoinHandle<Result<blake3::Hash>> {
    std::thread::spawn(move || {
        let mut h = blake3::Hasher::new();
        let mut buf = Vec::new();
        for m in rx {
            match m {
                Msg::Written(off, n) => {
                    let f = target.as_ref().expect("the target hasher has the target");
                    buf.resize(n, 0);
                    f.read_exact_at(&mut buf, off)
                        .with_context(|| format!("reading back the target at {off}"))?;
                    h.update(b"D");
                    h.update(&off.to_le_bytes());
                    h.update(&(n as u64).to_le_bytes());
                    h.update(&buf);
                }
                Msg::Data(off, b) => {
                    h.update(b"D");
                    h.update(&off.to_le_bytes());
                    h.update(&(b.len() as u64).to_le_bytes());
                    h.update(&b);
                    let _ = back.try_send(b);
                }
                Msg::Hole(off, len) => {
                    h.update(b"H");
                    h.update(&off.to_le_bytes());
                    h.update(&len.to_le_bytes());
                }
            }
        }
        Ok(h.finalize())
    })
}

/// The data extents of `f` below `size`: (start, end) pairs.
pub fn data_extents(f: &File, size: u64) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        let start = match rustix::fs::seek(f, SeekFrom::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            // no SEEK_DATA here (old fs, some devices): all data
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                return Ok(vec![(0, size)])
            }
            Err(e) => return Err(anyhow!("SEEK_DATA: {e}")),
        };
        if start >= size {
            break;
        }
        let end = rustix::fs::seek(f, SeekFrom::Hole(start))
            .map_err(|e| anyhow!("SEEK_HOLE: {e}"))?
            .min(size);
        out.push((start, end));
        off = end;
    }
    Ok(out)
}

/// Logical size of a file or block device.
pub fn size_of(f: &File) -> Result<u64> {
    let md = f.metadata()?;
    if md.file_type().is_block_device() {
        let n = rustix::fs::seek(f, SeekFrom::End(0)).map_err(|e| anyhow!("seek: {e}"))?;
        rustix::fs::seek(f, SeekFrom::Start(0)).map_err(|e| anyhow!("seek: {e}"))?;
        Ok(n)
    } else {
        Ok(md.len())
    }
}

/// The virtual size of a qcow2 image (the header's big-endian `size` at
/// offset 24, after the magic `QFI\xfb`); None when `f` is no qcow2.
pub fn qcow2_virtual_size(f: &File) -> Result<Option<u64>> {
    let mut h = [0u8; 32];
    match f.read_exact_at(&mut h, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading the qcow2 header"),
    }
    if &h[..4] != b"QFI\xfb" {
        return Ok(None);
    }
    Ok(Some(u64::from_be_bytes(
        h[24..32].try_into().expect("8 bytes"),
    )))
}

/// Makes `dst[off..off+len]` read as zeros: a hole on a fresh file (nothing
/// to do), ZERO_RANGE on a block device, written zeros where that fails.
fn zero_range(dst: &File, off: u64, len: u64, fresh_file: bool) -> Result<()> {
    if fresh_file || len == 0 {
        return Ok(());
    }
    if rustix::fs::fallocate(dst, rustix::fs::FallocateFlags::ZERO_RANGE, off, len).is_ok() {
        return Ok(());
    }
    let mut o = off;
    while o < off + len {
        super::interrupt::check()?;
        let k = (off + len - o).min(ZEROS.len() as u64) as usize;
        dst.write_all_at(&ZEROS[..k], o)?;
        o += k as u64;
    }
    Ok(())
}

/// Whether a copy onto `dst` may leave holes unwritten: only a regular
/// file with nothing allocated yet. A device (a new LV of a logical or zfs
/// pool has no st_blocks either) keeps old data and has a fixed size.
pub fn is_fresh_file(dst: &File) -> Result<bool> {
    let md = dst.metadata()?;
    Ok(md.file_type().is_file() && md.blocks() == 0)
}

/// Starts writeback of `dst[off..off+len]` without waiting for it, so the
/// disk works while the copy goes on. Only a hint: where it is not
/// supported the final fdatasync does all the work, so errors are ignored.
fn start_writeback(dst: &File, off: u64, len: usize) {
    // SAFETY: a plain syscall on a valid fd; no memory is passed.
    unsafe {
        libc::sync_file_range(
            dst.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Copies the first `size` bytes of `src` onto `dst` (a freshly created,
/// empty file when `fresh_file`, else a block device or preallocated
/// volume), keeping holes, and returns both hashes. A block device is
/// zeroed past `size` too. The caller compares
/// them (see [`Copied::verified`]) and syncs `dst`.
pub fn copy_verified(
    src: &File,
    dst: &File,
    size: u64,
    fresh_file: bool,
    progress: &dyn Progress,
) -> Result<Copied> {
    let t0 = Instant::now();
    let mut waited = Duration::ZERO;
    if fresh_file {
        dst.set_len(size).context("sizing the target")?;
    }
    let extents = data_extents(src, size)?;
    let (stx, srx) = sync_channel::<Msg>(4);
    let (dtx, drx) = sync_channel::<Msg>(4);
    let (sback_tx, sback) = sync_channel::<Vec<u8>>(8);
    let (dback_tx, _dback) = sync_channel::<Vec<u8>>(1);
    let sh = hasher_thread(srx, sback_tx, None);
    let dh = hasher_thread(drx, dback_tx, Some(dst.try_clone()?));
    // a returned buffer if one is free, else a new one
    let take = |back: &Receiver<Vec<u8>>, n: usize| {
        let mut b = back.try_recv().unwrap_or_default();
        b.resize(n, 0);
        b
    };
    let send = |tx: &std::sync::mpsc::SyncSender<Msg>, m: Msg| {
        tx.send(m).map_err(|_| anyhow!("hasher thread ended"))
    };
    let mut pos = 0u64;
    let mut data_bytes = 0u64;
    let result: Result<()> = (|| {
        for &(start, end) in &extents {
            if start > pos {
                zero_range(dst, pos, start - pos, fresh_file)?;
                send(&stx, Msg::Hole(pos, start - pos))?;
                send(&dtx, Msg::Hole(pos, start - pos))?;
                progress.inc(start - pos);
            }
            let mut off = start;
            while off < end {
                super::interrupt::check()?;
                let n = (end - off).min(CHUNK as u64) as usize;
                let mut buf = take(&sback, n);
                src.read_exact_at(&mut buf, off)
                    .with_context(|| format!("reading the source at {off}"))?;
                dst.write_all_at(&buf, off)
                    .with_context(|| format!("writing the target at {off}"))?;
                let w = Instant::now();
                start_writeback(dst, off, n);
                waited += w.elapsed();
                send(&stx, Msg::Data(off, buf))?;
                send(&dtx, Msg::Written(off, n))?;
                off += n as u64;
                data_bytes += n as u64;
                progress.inc(n as u64);
            }
            pos = end;
        }
        if size > pos {
            zero_range(dst, pos, size - pos, fresh_file)?;
            send(&stx, Msg::Hole(pos, size - pos))?;
            send(&dtx, Msg::Hole(pos, size - pos))?;
            progress.inc(size - pos);
        }
        // A device shows the guest all of itself, not just the source's
        // size: old data past the end would stay readable in the clone.
        if !fresh_file && dst.metadata()?.file_type().is_block_device() {
            let end = size_of(dst)?;
            if end > size {
                zero_range(dst, size, end - size, false)
                    .context("zeroing the device past the disk's end")?;
            }
        }
        let w = Instant::now();
        dst.sync_data().context("syncing the target")?;
        waited += w.elapsed();
        Ok(())
    })();
    drop(stx);
    drop(dtx);
    let s = sh.join().map_err(|_| anyhow!("hasher panicked"))?;
    let d = dh.join().map_err(|_| anyhow!("hasher panicked"))?;
    // a failed read-back is the root cause of a "hasher thread ended"
    let d = d?;
    result?;
    let s = s?;
    Ok(Copied {
        size,
        data_bytes,
        source_blake3: s.to_hex().to_string(),
        target_blake3: d.to_hex().to_string(),
        seconds: t0.elapsed().as_secs_f64(),
        sync_seconds: waited.as_secs_f64(),
    })
}

impl Copied {
    /// An error unless the target's data equals the source's.
    pub fn verified(&self, what: &str) -> Result<()> {
        if self.source_blake3 != self.target_blake3 {
            bail!(
                "verification of {what} failed: source blake3 {} but target {}",
                self.source_blake3,
                self.target_blake3
            );
        }
        Ok(())
    }
}
