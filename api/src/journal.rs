//! Persistence proportional to the change: a journal of change records
//! (`journal.jsonl`) beside the state snapshot (`state.json`).
//!
//! # Why a journal, not an embedded store
//!
//! Rewriting the whole state on every change cost 1.5-1.9 s and 83 MB of
//! writes for an unrelated firewall change on a host with 1 M V2P
//! entries. An embedded store (sled, redb, SQLite) would fix that too,
//! but it brings a file format of its own that `dump-state`, `replay`
//! and operators could no longer read with `jq`, a second source of truth
//! beside the JSON document the API already validates, and a dependency
//! whose crash behaviour we would have to trust rather than test. The
//! state is small in kinds (ports, V2P, V2B) and changes by whole records,
//! so an append-only log of the API's own changes over the existing
//! snapshot keeps one format (JSON), one validation path (restore replays
//! into the document and restores it as before), and crash behaviour we
//! test here and in the `kill -9` test.
//!
//! # The guarantees
//!
//! - Every change is one line (one JSON [`Change`]) appended and fsynced
//!   (`fdatasync`) before its call returns: a change that was acknowledged
//!   survives a crash.
//! - A crash during an append leaves at most a torn last line; reading
//!   stops at the last whole record, the torn bytes are cut off before
//!   the next append, and the change they held was never acknowledged.
//!   A bad record *followed by* good ones is not a crash's doing: the
//!   journal is refused, like a corrupt snapshot.
//! - When the journal passes [`COMPACT_AT`] bytes the whole state is
//!   written as a new snapshot (write, fsync, rename, fsync the
//!   directory) and the journal emptied. A crash between the two leaves
//!   a snapshot that already holds the journal's changes and the journal
//!   still there: replaying it again changes nothing, because every
//!   record sets or removes whole entries by key (a port by name, a
//!   mapping by VNI and address, a route by VNI and prefix), so a
//!   sequence of them applied twice ends where it ended once.

use crate::types::{CreateVnic, McastDoc, StateDoc, V2bRoute, V2pMapping};
use dataplane::{IpCidr, Vni};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const JOURNAL_FILE: &str = "journal.jsonl";

/// The journal size past which the state is compacted into a new
/// snapshot: large enough that a host with a million V2P entries (an
/// 83 MB snapshot) rewrites it rarely, small enough that a restart
/// replays it in well under a second.
pub const COMPACT_AT: u64 = 16 << 20;

/// One change to the persisted state, as the journal records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// A port created, or its configuration changed: the whole port.
    Port { port: Box<CreateVnic> },
    /// A port deleted.
    DeletePort { name: String },
    /// V2P mappings added or replaced (by VNI and address).
    SetV2p { mappings: Vec<V2pMapping> },
    /// One VPC's mappings removed: one address, or all of them.
    ClearV2p {
        vni: Vni,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<IpAddr>,
    },
    /// V2B routes added or replaced (by VNI and prefix).
    SetV2b { routes: Vec<V2bRoute> },
    /// One VPC's routes removed: one prefix, or all of them.
    ClearV2b {
        vni: Vni,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<IpCidr>,
    },
    /// The multicast state, whole (M2P, subscriptions, forwarding: small
    /// tables, see `server/mcast.rs`).
    Mcast { mcast: McastDoc },
}

/// A state document being replayed into: its tables by key.
struct Replay {
    ports: BTreeMap<String, CreateVnic>,
    v2p: BTreeMap<(Vni, IpAddr), V2pMapping>,
    v2b: BTreeMap<(Vni, IpCidr), V2bRoute>,
    mcast: McastDoc,
}

impl Replay {
    fn of(doc: &mut StateDoc) -> Replay {
        Replay {
            ports: std::mem::take(&mut doc.ports)
                .into_iter()
                .map(|p| (p.config.name.clone(), p))
                .collect(),
            v2p: std::mem::take(&mut doc.v2p)
                .into_iter()
                .map(|m| ((m.vni, m.ip), m))
                .collect(),
            v2b: std::mem::take(&mut doc.v2b)
                .into_iter()
                .map(|r| ((r.vni, r.prefix), r))
                .collect(),
            mcast: std::mem::take(&mut doc.mcast),
        }
    }

    fn apply(&mut self, c: Change) {
        match c {
            Change::Port { port } => {
                self.ports.insert(port.config.name.clone(), *port);
            }
            Change::DeletePort { name } => {
                // Its subscriptions went with it.
                self.mcast.subs.retain(|s| s.port != name);
                self.ports.remove(&name);
            }
            Change::SetV2p { mappings } => {
                for m in mappings {
                    self.v2p.insert((m.vni, m.ip), m);
                }
            }
            Change::ClearV2p { vni, ip: Some(ip) } => {
                self.v2p.remove(&(vni, ip));
            }
            Change::ClearV2p { vni, ip: None } => self.v2p.retain(|k, _| k.0 != vni),
            Change::SetV2b { routes } => {
                for r in routes {
                    self.v2b.insert((r.vni, r.prefix), r);
                }
            }
            Change::ClearV2b {
                vni,
                prefix: Some(p),
            } => {
                self.v2b.remove(&(vni, p));
            }
            Change::ClearV2b { vni, prefix: None } => self.v2b.retain(|k, _| k.0 != vni),
            Change::Mcast { mcast } => self.mcast = mcast,
        }
    }

    fn into_doc(self, doc: &mut StateDoc) {
        doc.ports = self.ports.into_values().collect();
        doc.v2p = self.v2p.into_values().collect();
        doc.v2b = self.v2b.into_values().collect();
        doc.mcast = self.mcast;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("reading {path}: {err}")]
    Io { path: PathBuf, err: io::Error },
    #[error(
        "{path}: record {line} (byte {offset}) is not a change record ({err}) and whole \
         records follow it: the journal was damaged, not torn by a crash \
         (move it away to start from the snapshot alone)"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        offset: usize,
        err: serde_json::Error,
    },
}

/// What reading a journal found.
#[derive(Debug, Default, PartialEq)]
pub struct Replayed {
    /// Whole records applied.
    pub records: usize,
    /// Bytes of a torn last record that were ignored (and cut off).
    pub torn_bytes: usize,
}

/// The journal of a state directory.
pub struct Journal {
    path: PathBuf,
    /// Open for appending once the first record is written.
    file: Option<File>,
    /// Its size (what the next append starts at).
    len: u64,
    /// Whether the file was read (and a torn tail cut off): appending
    /// after a torn tail would glue the new record onto it.
    read: bool,
}

impl Journal {
    pub fn new(dir: &Path) -> Journal {
        Journal {
            path: dir.join(JOURNAL_FILE),
            file: None,
            len: 0,
            read: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal's size in bytes (after [`Journal::replay`]).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn io(&self, err: io::Error) -> JournalError {
        JournalError::Io {
            path: self.path.clone(),
            err,
        }
    }

    /// Applies the journal's records to `doc` (the snapshot), in order. A
    /// torn last record is ignored and cut off the file, so the next
    /// append starts on a record boundary.
    pub fn replay(&mut self, doc: &mut StateDoc) -> Result<Replayed, JournalError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.len = 0;
                self.read = true;
                return Ok(Replayed::default());
            }
            Err(e) => return Err(self.io(e)),
        };
        let mut changes = Vec::new();
        let mut good = 0usize;
        let mut pending_error = None;
        let mut offset = 0usize;
        for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let whole = line.ends_with(b"\n");
            match serde_json::from_slice::<Change>(line) {
                Ok(c) if whole => {
                    if let Some((line, offset, err)) = pending_error.take() {
                        return Err(JournalError::Corrupt {
                            path: self.path.clone(),
                            line,
                            offset,
                            err,
                        });
                    }
                    changes.push(c);
                    good = offset + line.len();
                }
                // A last line without its newline was being written when
                // the process died: its change was never acknowledged.
                Ok(_) => {}
                Err(err) => {
                    if pending_error.is_none() {
                        pending_error = Some((i + 1, offset, err));
                    }
                }
            }
            offset += line.len();
        }
        let torn_bytes = bytes.len() - good;
        if torn_bytes > 0 {
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.path)
                .map_err(|e| self.io(e))?;
            f.set_len(good as u64).map_err(|e| self.io(e))?;
            f.sync_all().map_err(|e| self.io(e))?;
        }
        self.len = good as u64;
        self.read = true;
        let records = changes.len();
        let mut r = Replay::of(doc);
        for c in changes {
            r.apply(c);
        }
        r.into_doc(doc);
        Ok(Replayed {
            records,
            torn_bytes,
        })
    }

    /// Appends one record and makes it durable before returning; the
    /// journal's new size.
    pub fn append(&mut self, c: &Change) -> Result<u64, io::Error> {
        if !self.read {
            self.replay(&mut StateDoc::default())
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        let mut line = serde_json::to_vec(c).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.file.is_none() {
            let existed = self.path.exists();
            // Never through a link: root appending to a planted link would
            // write wherever it points.
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&self.path)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            if !existed {
                // The new file's name must survive a crash too.
                if let Some(dir) = self.path.parent() {
                    File::open(dir)?.sync_all()?;
                }
            }
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("the journal is not open"));
        };
        if let Err(e) = f.write_all(&line).and_then(|()| f.sync_data()) {
            // A partial line is cut off so the next record starts whole.
            let _ = f.set_len(self.len);
            return Err(e);
        }
        self.len += line.len() as u64;
        Ok(self.len)
    }

    /// Empties the journal (its records are in a snapshot now).
    pub fn reset(&mut self) -> Result<(), io::Error> {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
        {
            Ok(f) => {
                f.set_len(0)?;
                f.sync_all()?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::STATE_VERSION;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-journal-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn m(vni: u32, ip: &str, host: &str) -> V2pMapping {
        V2pMapping {
            vni: Vni::new(vni).unwrap(),
            ip: ip.parse().unwrap(),
            guest_mac: vnic::config::MacAddr([0xa8, 0x40, 0x25, 0, 0, 9]),
            host: host.parse().unwrap(),
        }
    }

    fn doc(v2p: Vec<V2pMapping>) -> StateDoc {
        StateDoc {
            version: STATE_VERSION,
            v2p,
            ..Default::default()
        }
    }

    #[test]
    fn records_replay_over_the_snapshot_in_order() {
        let d = tmpdir("replay");
        let mut j = Journal::new(&d);
        let vni = Vni::new(7).unwrap();
        j.append(&Change::SetV2p {
            mappings: vec![m(7, "10.0.0.2", "fd00::2"), m(8, "10.0.0.3", "fd00::3")],
        })
        .unwrap();
        j.append(&Change::ClearV2p {
            vni,
            ip: Some("10.0.0.1".parse().unwrap()),
        })
        .unwrap();
        j.append(&Change::SetV2p {
            mappings: vec![m(7, "10.0.0.2", "fd00::22")],
        })
        .unwrap();
        j.append(&Change::SetV2b {
            routes: vec![V2bRoute {
                vni,
                prefix: "0.0.0.0/0".parse().unwrap(),
                endpoints: vec!["fd00::100".parse().unwrap()],
            }],
        })
        .unwrap();
        let snapshot = doc(vec![
            m(7, "10.0.0.1", "fd00::1"),
            m(9, "10.0.0.9", "fd00::9"),
        ]);
        let mut got = snapshot.clone();
        let r = Journal::new(&d).replay(&mut got).unwrap();
        assert_eq!(r.records, 4);
        assert_eq!(r.torn_bytes, 0);
        assert_eq!(
            got.v2p,
            vec![
                m(7, "10.0.0.2", "fd00::22"),
                m(8, "10.0.0.3", "fd00::3"),
                m(9, "10.0.0.9", "fd00::9")
            ]
        );
        assert_eq!(got.v2b.len(), 1);
        // Replayed again over its own result (a crash after a compaction's
        // rename, before the journal was emptied): nothing changes.
        let mut again = got.clone();
        Journal::new(&d).replay(&mut again).unwrap();
        assert_eq!(again, got);
        // A whole-VPC clear.
        let mut j = Journal::new(&d);
        j.replay(&mut doc(vec![])).unwrap();
        j.append(&Change::ClearV2p { vni, ip: None }).unwrap();
        let mut got = snapshot;
        Journal::new(&d).replay(&mut got).unwrap();
        assert!(got.v2p.iter().all(|e| e.vni != vni), "{:?}", got.v2p);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_cut_off() {
        let d = tmpdir("torn");
        let mut j = Journal::new(&d);
        j.append(&Change::SetV2p {
            mappings: vec![m(7, "10.0.0.2", "fd00::2")],
        })
        .unwrap();
        let whole = j.len();
        // The process died in the middle of the next append.
        let next = serde_json::to_vec(&Change::SetV2p {
            mappings: vec![m(7, "10.0.0.3", "fd00::3")],
        })
        .unwrap();
        for cut in [1, next.len() / 2, next.len()] {
            let mut f = OpenOptions::new().append(true).open(j.path()).unwrap();
            f.write_all(&next[..cut]).unwrap();
            drop(f);
            let mut got = doc(vec![]);
            let mut j2 = Journal::new(&d);
            let r = j2.replay(&mut got).unwrap();
            assert_eq!(r.records, 1, "cut at {cut}");
            assert_eq!(r.torn_bytes, cut);
            assert_eq!(got.v2p, vec![m(7, "10.0.0.2", "fd00::2")]);
            assert_eq!(fs::metadata(j.path()).unwrap().len(), whole, "cut off");
        }
        // The next append starts on a record boundary.
        let mut j = Journal::new(&d);
        j.replay(&mut doc(vec![])).unwrap();
        j.append(&Change::DeletePort { name: "x".into() }).unwrap();
        assert_eq!(
            Journal::new(&d).replay(&mut doc(vec![])).unwrap().records,
            2
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_record_before_whole_ones_is_refused() {
        let d = tmpdir("damaged");
        let mut j = Journal::new(&d);
        let rec = Change::DeletePort { name: "x".into() };
        j.append(&rec).unwrap();
        let mut f = OpenOptions::new().append(true).open(j.path()).unwrap();
        f.write_all(b"{\"op\": \"bogus\"}\n").unwrap();
        drop(f);
        j.append(&rec).unwrap();
        let e = Journal::new(&d).replay(&mut doc(vec![])).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("record 2") && s.contains("damaged"), "{s}");
        fs::remove_dir_all(&d).unwrap();
    }
}
