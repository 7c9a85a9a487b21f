//! Open segment files, a bounded number at a time.
//!
//! Every segment used to hold its file open for as long as it lived, so a data directory with
//! many partitions (many apps × many days, each with a few segments) ran into the process's
//! file-descriptor limit: the next flush could not create its file and writes stopped. Now a
//! segment keeps a [`Handle`] that opens its file when a block is read and may close it again
//! when more than [`set_max_open`] files are open: a clock sweep closes the files not used
//! since the hand last passed them (RocksDB's table cache and ClickHouse's open-file cache do
//! the same job).
//!
//! The budget is process-wide, as the descriptor limit it protects is.
//!
//! A segment about to be deleted (merged away, or dropped by retention) is first
//! [pinned](Handle::pin): its file is opened if it was closed and never closed again, so a
//! query still reading it finishes on the open descriptor after the name is gone.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// Used when nothing else was set: well under the usual 1,024-descriptor soft limit.
pub const DEFAULT_MAX_OPEN: usize = 512;

static CACHE: Cache = Cache {
    ring: Mutex::new(Ring { handles: Vec::new(), hand: 0 }),
    max_open: AtomicUsize::new(DEFAULT_MAX_OPEN),
    open: AtomicUsize::new(0),
    opens: AtomicU64::new(0),
    closes: AtomicU64::new(0),
};

/// Sets how many segment files may stay open at once (at least 1). Files beyond it are
/// closed by the next open.
pub fn set_max_open(n: usize) {
    CACHE.max_open.store(n.max(1), Ordering::Relaxed);
}

pub fn max_open() -> usize {
    CACHE.max_open.load(Ordering::Relaxed)
}

/// Segment files open now, files opened and files closed by the cache since the start.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileStats {
    pub open: usize,
    pub opens: u64,
    pub closes: u64,
}

pub fn stats() -> FileStats {
    FileStats {
        open: CACHE.open.load(Ordering::Relaxed),
        opens: CACHE.opens.load(Ordering::Relaxed),
        closes: CACHE.closes.load(Ordering::Relaxed),
    }
}

struct Cache {
    ring: Mutex<Ring>,
    max_open: AtomicUsize,
    /// Handles holding a file (a reader may still hold a closed handle's file for a moment).
    open: AtomicUsize,
    opens: AtomicU64,
    closes: AtomicU64,
}

/// The handles that held a file when last seen, in the order the clock hand visits them.
struct Ring {
    handles: Vec<Weak<Handle>>,
    hand: usize,
}

/// A segment file's path and, while it is open, its descriptor.
#[derive(Debug)]
pub struct Handle {
    path: Arc<PathBuf>,
    file: Mutex<Option<Arc<File>>>,
    /// Read since the clock hand last passed.
    used: AtomicBool,
    /// Never closed: the file's name is about to go.
    pinned: AtomicBool,
}

impl Handle {
    /// A handle for `path`, already open as `file`.
    pub fn new(path: Arc<PathBuf>, file: File) -> Arc<Handle> {
        let h = Arc::new(Handle {
            path,
            file: Mutex::new(Some(Arc::new(file))),
            used: AtomicBool::new(true),
            pinned: AtomicBool::new(false),
        });
        CACHE.opened(&h);
        h
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_arc(&self) -> Arc<PathBuf> {
        self.path.clone()
    }

    /// The open file, opened again if the cache closed it.
    pub fn file(self: &Arc<Self>) -> std::io::Result<Arc<File>> {
        self.used.store(true, Ordering::Relaxed);
        if let Some(f) = self.file.lock().as_ref() {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(&*self.path)?);
        {
            let mut slot = self.file.lock();
            if let Some(other) = slot.as_ref() {
                // another reader opened it meanwhile
                return Ok(other.clone());
            }
            *slot = Some(f.clone());
        }
        CACHE.opens.fetch_add(1, Ordering::Relaxed);
        CACHE.opened(self);
        Ok(f)
    }

    /// Opens the file if needed and keeps it open until the handle is dropped: call before
    /// deleting the file while readers may still hold the segment.
    pub fn pin(self: &Arc<Self>) -> std::io::Result<()> {
        self.pinned.store(true, Ordering::Relaxed);
        self.file().map(drop)
    }

    /// Closes the file unless it is pinned or was used since the hand last passed. `None`:
    /// kept open; `Some(closed)`: the handle holds no file any more, `closed` if it just let go
    /// of one.
    fn sweep(&self) -> Option<bool> {
        if self.pinned.load(Ordering::Relaxed) || self.used.swap(false, Ordering::Relaxed) {
            return None;
        }
        Some(self.file.lock().take().is_some())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.file.get_mut().take().is_some() {
            CACHE.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Cache {
    /// Counts `h`'s newly opened file and closes others while more than the budget are open.
    fn opened(&self, h: &Arc<Handle>) {
        let mut ring = self.ring.lock();
        ring.handles.push(Arc::downgrade(h));
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        let max = self.max_open.load(Ordering::Relaxed);
        if open > max {
            let closed = ring.sweep(open - max);
            self.open.fetch_sub(closed, Ordering::Relaxed);
            self.closes.fetch_add(closed as u64, Ordering::Relaxed);
        } else if ring.handles.len() > 2 * open + 64 {
            // segments dropped since the last sweep
            ring.handles.retain(|w| w.strong_count() > 0);
            ring.hand = 0;
        }
    }
}

impl Ring {
    /// Closes up to `excess` files, in at most two turns of the hand (the first may only
    /// clear `used` marks); how many it closed.
    fn sweep(&mut self, excess: usize) -> usize {
        let mut closed = 0;
        let mut steps = 2 * self.handles.len();
        while closed < excess && steps > 0 && !self.handles.is_empty() {
            steps -= 1;
            if self.hand >= self.handles.len() {
                self.hand = 0;
            }
            // a dropped handle has already uncounted its file
            match self.handles[self.hand].upgrade().map(|h| h.sweep()) {
                Some(None) => self.hand += 1,
                Some(Some(just_closed)) => {
                    closed += usize::from(just_closed);
                    self.handles.swap_remove(self.hand);
                }
                None => {
                    self.handles.swap_remove(self.hand);
                }
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget is process-wide and other tests of this crate open segments too, so this
    /// checks the cache on its own ring.
    #[test]
    fn closes_unused_files_and_reopens_them() {
        let dir = tempfile::tempdir().unwrap();
        let handles: Vec<Arc<Handle>> = (0..8)
            .map(|i| {
                let p = dir.path().join(format!("{i}"));
                std::fs::write(&p, format!("file {i}")).unwrap();
                Arc::new(Handle {
                    path: Arc::new(p.clone()),
                    file: Mutex::new(Some(Arc::new(File::open(&p).unwrap()))),
                    used: AtomicBool::new(false),
                    pinned: AtomicBool::new(i == 0),
                })
            })
            .collect();
        let mut ring = Ring { handles: handles.iter().map(Arc::downgrade).collect(), hand: 0 };
        handles[1].used.store(true, Ordering::Relaxed);
        assert_eq!(ring.sweep(3), 3);
        let open: Vec<bool> = handles.iter().map(|h| h.file.lock().is_some()).collect();
        // the pinned one and the one just used stay; three unused ones close (each closed
        // handle leaves the ring, the last one taking its place under the hand)
        assert_eq!(open, [true, true, false, true, true, true, false, false]);
        assert_eq!(ring.handles.len(), 5);
        // a file kept open survives its name
        std::fs::remove_file(dir.path().join("5")).unwrap();
        let mut s = String::new();
        use std::io::Read;
        (&*handles[5].file.lock().clone().unwrap()).read_to_string(&mut s).unwrap();
        assert_eq!(s, "file 5");
        // the used one loses its mark at the first pass and its file at the next; the pinned
        // one is never closed
        assert_eq!(ring.sweep(3), 3);
        assert!(handles[1].file.lock().is_some());
        assert_eq!(ring.sweep(1), 1);
        assert!(handles[1].file.lock().is_none());
        assert_eq!(ring.sweep(1), 0);
        assert!(handles[0].file.lock().is_some());
        // these handles never entered the global count: take their files before they drop
        for h in &handles {
            h.file.lock().take();
        }
    }
}
