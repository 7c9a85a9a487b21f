//! Appending to the log: one open file at a time, rotated when the engine checkpoints.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{file_header, file_name, io_err, list_files, sync_dir, FileSeq, Result, WalError, MAX_FRAME_LEN};

/// The writable end of the log.
pub struct Wal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    seq: FileSeq,
    bytes: u64,
    buf: Vec<u8>,
    poisoned: Option<String>,
}

impl Wal {
    /// Starts a new file after every existing one in `dir` (creating `dir` if needed).
    /// Call [`crate::replay`] first: this never reads old files.
    pub fn create(dir: &Path) -> Result<Wal> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let next = list_files(dir)?.last().map_or(1, |(s, _)| s + 1);
        let (file, path) = new_file(dir, next)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            path,
            seq: next,
            bytes: crate::HEADER_LEN as u64,
            buf: Vec::with_capacity(1 << 20),
            poisoned: None,
        })
    }

    /// Sequence number of the file being written.
    pub fn current_seq(&self) -> FileSeq {
        self.seq
    }

    /// Bytes in the current file.
    pub fn current_bytes(&self) -> u64 {
        self.bytes
    }

    fn check(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(WalError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Buffers one payload as a frame. Nothing reaches the file before [`Wal::write`].
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        self.check()?;
        if payload.len() > MAX_FRAME_LEN {
            return Err(WalError::TooLarge { len: payload.len(), max: MAX_FRAME_LEN });
        }
        crate::encode_frame(payload, &mut self.buf);
        Ok(())
    }

    /// Writes the buffered frames to the file (into the page cache; see [`Wal::sync`]).
    pub fn write(&mut self) -> Result<()> {
        self.check()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = (|| {
            fail::fail_point!("wal::write", |arg| {
                // a short write, as a full disk leaves it: half the frames, then the error
                let half = self.buf.len() / 2;
                self.file.write_all(&self.buf[..half])?;
                Err(crate::injected(arg))
            });
            self.file.write_all(&self.buf)
        })();
        if let Err(e) = written {
            // A short write leaves a torn frame that replay would cut, with every frame after
            // it. On a full disk the file is cut back to its last whole frame and writing may
            // go on later; otherwise (or if that cut fails) the log stops here.
            let no_space = e.raw_os_error() == Some(28); // ENOSPC
            if no_space && self.file.set_len(self.bytes).is_ok() {
                self.buf.clear();
                return Err(WalError::NoSpace { path: self.path.clone() });
            }
            self.poisoned = Some(format!("write to {} failed: {e}", self.path.display()));
            return Err(io_err(&self.path)(e));
        }
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        if self.buf.capacity() > 16 << 20 {
            self.buf = Vec::with_capacity(1 << 20);
        }
        Ok(())
    }

    /// Makes everything written so far durable (`fdatasync`). A failure poisons the log.
    pub fn sync(&mut self) -> Result<()> {
        self.check()?;
        let synced = (|| {
            fail::fail_point!("wal::sync", |arg| Err(crate::injected(arg)));
            self.file.sync_data()
        })();
        if let Err(e) = synced {
            self.poisoned = Some(format!("fsync of {} failed: {e}", self.path.display()));
            return Err(io_err(&self.path)(e));
        }
        Ok(())
    }

    /// Syncs and closes the current file and starts the next one. Returns the sequence number
    /// of the file just closed: every frame appended so far is in a file `<=` it.
    pub fn rotate(&mut self) -> Result<FileSeq> {
        self.write()?;
        self.sync()?;
        let closed = self.seq;
        let (file, path) = match new_file(&self.dir, closed + 1) {
            Ok(f) => f,
            Err(WalError::Io { path, source }) if source.raw_os_error() == Some(28) => {
                // a full disk: take the new file back and go on writing the current one
                let _ = std::fs::remove_file(&path);
                return Err(WalError::NoSpace { path });
            }
            Err(e) => return Err(e),
        };
        self.file = file;
        self.path = path;
        self.seq = closed + 1;
        self.bytes = crate::HEADER_LEN as u64;
        Ok(closed)
    }

    /// Deletes every file with a sequence number `<= seq` (their frames are stored elsewhere).
    pub fn remove_through(&self, seq: FileSeq) -> Result<()> {
        remove_through(&self.dir, seq.min(self.seq.saturating_sub(1)))
    }

    /// Makes the log refuse all further writes, as after a failed fsync. Used by fault tests.
    pub fn poison(&mut self, why: &str) {
        self.poisoned = Some(why.to_string());
    }

    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }
}

/// Deletes every WAL file in `dir` with a sequence number `<= seq`.
pub fn remove_through(dir: &Path, seq: FileSeq) -> Result<()> {
    let mut removed = false;
    for (s, path) in list_files(dir)? {
        if s <= seq {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

fn new_file(dir: &Path, seq: FileSeq) -> Result<(File, PathBuf)> {
    let path = dir.join(file_name(seq));
    fail::fail_point!("wal::create", |arg| Err(io_err(&path)(crate::injected(arg))));
    let mut file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_err(&path))?;
    file.write_all(&file_header()).map_err(io_err(&path))?;
    file.sync_all().map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok((file, path))
}
