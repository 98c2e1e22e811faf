//! A host's underlay uplinks (one, or two: one per top-of-rack switch, as
//! on Oxide's sleds) and how a switch spreads its tunnels over them.
//!
//! - Receive: every uplink is read, whatever its state (the far hosts
//!   choose the path of what they send).
//! - Transmit: each frame goes on one of the *live* uplinks (its link up,
//!   per the device, and in use, per the operator's `set-underlay`),
//!   picked by a hash of its outer flow ([`outer_hash`]: the Geneve outer
//!   UDP source port, which hashes the inner flow, and the outer
//!   destination). The choice is made at send time from the frame alone,
//!   so it is the same for every packet of a flow, and nothing a port
//!   keeps for the flow depends on it: when an uplink goes down its flows
//!   move to the other at the next burst, without any port re-walking its
//!   layers, and move back when it returns.
//! - The overlay layer writes the outer Ethernet header of uplink 0 (its
//!   MAC as source, its next hop as destination); a frame sent on another
//!   uplink gets that uplink's addresses (12 bytes rewritten; a multicast
//!   destination MAC, an underlay group's, is kept).
//! - With one uplink nothing of this runs: every frame goes to it, as
//!   before (its link state is still read, for the operator).

use crate::backend::Backend;
use dataplane::headers::Mac;
use dataplane::PacketBuf;
use serde::{Deserialize, Serialize};

/// The most uplinks a host has (one per top-of-rack switch).
pub const MAX_UPLINKS: usize = 2;

/// The drop reason of a frame for the underlay when no uplink is live
/// (every link down, or none in use).
pub const NO_LIVE_UPLINK: &str = "no_live_uplink";

/// One uplink as the daemon opens it, for one worker.
pub struct UplinkDevice {
    /// The operator's name for it (the interface's, usually).
    pub name: String,
    pub backend: Box<dyn Backend>,
    /// The outer Ethernet source of what leaves on it.
    pub mac: Mac,
    /// The outer Ethernet destination (its next hop's MAC).
    pub next_hop_mac: Mac,
}

/// One uplink's counters (per worker; the control plane sums them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UplinkStats {
    /// Frames received on it.
    pub rx: u64,
    /// Frames sent on it.
    pub tx: u64,
    /// Frames its device did not take (full queue) or lost to an error.
    pub tx_dropped: u64,
    /// Frames sent on it with their outer Ethernet addresses rewritten
    /// (the overlay wrote uplink 0's).
    pub rewritten: u64,
    /// Times its link was seen going down, and coming back up.
    pub link_downs: u64,
    pub link_ups: u64,
}

impl UplinkStats {
    /// Every counter by name: what metrics and the CLI export.
    /// Destructured whole, so a counter added here fails the build until
    /// it is listed.
    pub fn counters(&self) -> [(&'static str, u64); 6] {
        let UplinkStats {
            rx,
            tx,
            tx_dropped,
            rewritten,
            link_downs,
            link_ups,
        } = *self;
        [
            ("rx", rx),
            ("tx", tx),
            ("tx_dropped", tx_dropped),
            ("rewritten", rewritten),
            ("link_downs", link_downs),
            ("link_ups", link_ups),
        ]
    }

    pub fn add(&mut self, o: &UplinkStats) {
        self.rx += o.rx;
        self.tx += o.tx;
        self.tx_dropped += o.tx_dropped;
        self.rewritten += o.rewritten;
        self.link_downs += o.link_downs;
        self.link_ups += o.link_ups;
    }
}

/// What a switch says of one uplink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkState {
    pub name: String,
    /// Its link, as its device last said.
    pub link_up: bool,
    /// The operator has it carry traffic (`set-underlay`).
    pub in_use: bool,
    pub mac: Mac,
    pub next_hop_mac: Mac,
    pub stats: UplinkStats,
}

pub(crate) struct Uplink {
    pub(crate) name: String,
    pub(crate) backend: Box<dyn Backend>,
    mac: Mac,
    next_hop_mac: Mac,
    link_up: bool,
    in_use: bool,
    pub(crate) stats: UplinkStats,
    /// This round's frames for it (kept: no allocation).
    pub(crate) txq: Vec<PacketBuf>,
}

/// A switch's uplinks (1 or 2) and which of them are live.
pub(crate) struct Uplinks {
    pub(crate) list: Vec<Uplink>,
    /// The indices of the live uplinks, `n_live` of them.
    live: [u8; MAX_UPLINKS],
    n_live: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UplinkError {
    #[error("no uplink named '{0}' (configured: {1})")]
    Unknown(String, String),
    #[error("uplink '{0}' is named twice")]
    Twice(String),
    #[error("at least one uplink must stay in use")]
    Empty,
}

impl Uplinks {
    pub(crate) fn new(devices: Vec<UplinkDevice>) -> Uplinks {
        let list = devices
            .into_iter()
            .take(MAX_UPLINKS)
            .map(|d| Uplink {
                name: d.name,
                backend: d.backend,
                mac: d.mac,
                next_hop_mac: d.next_hop_mac,
                link_up: true,
                in_use: true,
                stats: UplinkStats::default(),
                txq: Vec::with_capacity(crate::switch::BURST * 2),
            })
            .collect();
        let mut u = Uplinks {
            list,
            live: [0; MAX_UPLINKS],
            n_live: 0,
        };
        u.relive();
        u
    }

    /// The live uplinks' indices.
    #[inline]
    pub(crate) fn live(&self) -> &[u8] {
        &self.live[..usize::from(self.n_live)]
    }

    fn relive(&mut self) {
        self.n_live = 0;
        for (i, u) in self.list.iter().enumerate() {
            if u.link_up && u.in_use {
                self.live[usize::from(self.n_live)] = i as u8;
                self.n_live += 1;
            }
        }
    }

    /// Reads every uplink's link state from its device; counts and applies
    /// the changes. Returns whether any changed.
    pub(crate) fn check_links(&mut self) -> bool {
        let mut changed = false;
        for u in &mut self.list {
            let up = u.backend.link_up();
            if up != u.link_up {
                u.link_up = up;
                if up {
                    u.stats.link_ups += 1;
                } else {
                    u.stats.link_downs += 1;
                }
                changed = true;
            }
        }
        if changed {
            self.relive();
        }
        changed
    }

    /// Sets which uplinks carry traffic, by name (the others still
    /// receive).
    pub(crate) fn set_in_use(&mut self, names: &[String]) -> Result<(), UplinkError> {
        if names.is_empty() {
            return Err(UplinkError::Empty);
        }
        for (k, n) in names.iter().enumerate() {
            if names[..k].contains(n) {
                return Err(UplinkError::Twice(n.clone()));
            }
            if !self.list.iter().any(|u| &u.name == n) {
                let all: Vec<&str> = self.list.iter().map(|u| u.name.as_str()).collect();
                return Err(UplinkError::Unknown(n.clone(), all.join(", ")));
            }
        }
        for u in &mut self.list {
            u.in_use = names.contains(&u.name);
        }
        self.relive();
        Ok(())
    }

    pub(crate) fn states(&self) -> Vec<UplinkState> {
        self.list
            .iter()
            .map(|u| UplinkState {
                name: u.name.clone(),
                link_up: u.link_up,
                in_use: u.in_use,
                mac: u.mac,
                next_hop_mac: u.next_hop_mac,
                stats: u.stats,
            })
            .collect()
    }

    /// Puts a frame on uplink `i`'s queue, with `i`'s outer Ethernet
    /// addresses if it is not uplink 0 (whose addresses the overlay wrote).
    #[inline]
    pub(crate) fn enqueue(&mut self, i: usize, mut pkt: PacketBuf) {
        let u = &mut self.list[i];
        if i != 0 {
            if let Some(eth) = pkt.as_mut_slice().get_mut(0..12) {
                // An underlay group's MAC (multicast) stays what it is.
                if eth[0] & 1 == 0 {
                    eth[0..6].copy_from_slice(&u.next_hop_mac);
                }
                eth[6..12].copy_from_slice(&u.mac);
                u.stats.rewritten += 1;
            }
        }
        u.txq.push(pkt);
    }
}

/// The hash of a tunnel's outer flow: its outer UDP source port (which
/// the overlay derived from the inner flow) and its outer IPv6
/// destination. Read from fixed offsets (sluice's tunnels carry no IPv6
/// extension headers); anything shorter hashes to 0, so it still goes
/// somewhere, always the same place.
#[inline]
pub fn outer_hash(frame: &[u8]) -> u32 {
    let (Some(dst), Some(sport)) = (frame.get(38..54), frame.get(54..56)) else {
        return 0;
    };
    let mut h = u32::from(u16::from_be_bytes([sport[0], sport[1]]));
    for w in dst.chunks_exact(4) {
        h ^= u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
    }
    // Fibonacci hashing: the top bits mix every input bit.
    h.wrapping_mul(0x9E37_79B1) >> 16
}
