//! Persisted state: one JSON document ([`StateDoc`]) in the state
//! directory, the snapshot, and a journal of the changes made since
//! (`journal.jsonl`, see [`crate::journal`]): a change appends one record;
//! the snapshot is rewritten whole only when the journal grows past
//! [`crate::journal::COMPACT_AT`], and at start the journal is replayed
//! over it.
//!
//! A crash never leaves a torn file: the document is written to a
//! temporary file, fsynced, renamed over the old one, and the directory
//! fsynced, so a reader finds either the complete previous state or the
//! complete new one. The document carries its format version; a file from
//! another version is refused with a message saying so, never misread.

use crate::journal::{Change, Journal, JournalError};
use crate::types::StateDoc;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The state format this build writes and reads.
pub const STATE_VERSION: u32 = 1;

pub const STATE_FILE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}: {err}")]
    Read { path: PathBuf, err: io::Error },
    #[error("writing {path}: {err}")]
    Write { path: PathBuf, err: io::Error },
    #[error("{path} is not a sluice state document: {err}")]
    Parse {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error(
        "{path} has state format version {found}; this sluiced reads version {STATE_VERSION} \
         (move the file away to start empty, or run the sluiced that wrote it)"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{0}")]
    Journal(#[from] JournalError),
}

/// The state file of a state directory.
pub struct StateStore {
    dir: PathBuf,
    journal: std::sync::Mutex<Journal>,
    /// The journal size that makes [`StateStore::append`] ask for a
    /// compaction.
    compact_at: std::sync::atomic::AtomicU64,
}

impl StateStore {
    /// Uses `dir` (created if missing, mode 0700).
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        let werr = |err| StateError::Write {
            path: dir.to_path_buf(),
            err,
        };
        fs::create_dir_all(dir).map_err(werr)?;
        set_mode(dir, 0o700).map_err(werr)?;
        Ok(StateStore {
            dir: dir.to_path_buf(),
            journal: std::sync::Mutex::new(Journal::new(dir)),
            compact_at: crate::journal::COMPACT_AT.into(),
        })
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The saved state: the snapshot with the journal replayed over it,
    /// or `None` if nothing was ever saved.
    pub fn load(&self) -> Result<Option<StateDoc>, StateError> {
        let snapshot = self.load_snapshot()?;
        let mut doc = snapshot.clone().unwrap_or(StateDoc {
            version: STATE_VERSION,
            ..Default::default()
        });
        let r = self.journal().replay(&mut doc)?;
        Ok(if snapshot.is_none() && r.records == 0 {
            None
        } else {
            Some(doc)
        })
    }

    /// Records one change durably (appended and fsynced). `Ok(true)`
    /// when the journal has grown past its limit: the caller should
    /// [`save`](StateStore::save) the whole state, which empties it.
    pub fn append(&self, c: &Change) -> Result<bool, StateError> {
        let mut j = self.journal();
        let len = j.append(c).map_err(|err| StateError::Write {
            path: j.path().to_path_buf(),
            err,
        })?;
        Ok(len >= self.compact_at.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Sets the journal size that asks for a compaction (tests make it
    /// small to see compactions happen).
    pub fn set_compact_at(&self, bytes: u64) {
        self.compact_at
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// The journal's size in bytes.
    pub fn journal_len(&self) -> u64 {
        self.journal().len()
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The snapshot alone, or `None` if none was written.
    fn load_snapshot(&self) -> Result<Option<StateDoc>, StateError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StateError::Read { path, err }),
        };
        parse(&path, &bytes).map(Some)
    }

    /// Saves `doc` as the snapshot, atomically, and empties the journal
    /// (whose changes `doc` holds). A crash between the two replays the
    /// journal over a snapshot that has its changes already, which
    /// changes nothing (see [`crate::journal`]).
    pub fn save(&self, doc: &StateDoc) -> Result<(), StateError> {
        let mut j = self.journal();
        self.save_snapshot(doc)?;
        j.reset().map_err(|err| StateError::Write {
            path: j.path().to_path_buf(),
            err,
        })
    }

    /// Saves `doc` atomically (write, fsync, rename, fsync the directory).
    fn save_snapshot(&self, doc: &StateDoc) -> Result<(), StateError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let werr = |err| StateError::Write {
            path: path.clone(),
            err,
        };
        let bytes = serde_json::to_vec(doc).map_err(|e| werr(io::Error::other(e)))?;
        {
            let mut f = create_tmp(&tmp).map_err(werr)?;
            f.write_all(&bytes).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        fs::rename(&tmp, &path).map_err(werr)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(werr)?;
        Ok(())
    }
}

/// Reads a state document (a state file, or what `dump-state` printed),
/// checking its version before anything else.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<StateDoc, StateError> {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let v: VersionOnly = serde_json::from_slice(bytes).map_err(|err| StateError::Parse {
        path: path.to_path_buf(),
        err,
    })?;
    if v.version != STATE_VERSION {
        return Err(StateError::Version {
            path: path.to_path_buf(),
            found: v.version,
        });
    }
    serde_json::from_slice(bytes).map_err(|err| StateError::Parse {
        path: path.to_path_buf(),
        err,
    })
}

/// A fresh temporary file at `path`: whatever is there (a file a crash
/// left, or a planted link) is removed, not followed, and the new file
/// is made with O_EXCL|O_NOFOLLOW, mode 0600, so nothing outside the
/// state directory is ever written or truncated through it.
fn create_tmp(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
}

pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_snapshot_is_never_written_through_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("planted");
        let s = StateStore::open(&d).unwrap();
        let victim = d.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, d.join(format!("{STATE_FILE}.tmp"))).unwrap();
        s.save(&StateDoc::default()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        let mode = fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the snapshot is private");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn saves_and_loads_and_refuses_other_versions() {
        let d = tmpdir("v");
        let s = StateStore::open(&d).unwrap();
        assert!(s.load().unwrap().is_none());
        let doc = StateDoc {
            version: STATE_VERSION,
            underlay_ip: Some("fd00::1".parse().unwrap()),
            ..Default::default()
        };
        s.save(&doc).unwrap();
        assert_eq!(s.load().unwrap(), Some(doc));
        fs::write(s.path(), br#"{"version": 2, "ports": "whatever"}"#).unwrap();
        let e = s.load().unwrap_err().to_string();
        assert!(
            e.contains("version 2") && e.contains("reads version 1"),
            "{e}"
        );
        fs::write(s.path(), b"{not json").unwrap();
        assert!(matches!(s.load(), Err(StateError::Parse { .. })));
        fs::remove_dir_all(&d).unwrap();
    }
}
