//! The live migration of a port, as the API carries it: one versioned JSON
//! document ([`MigrationDoc`]) with the port's configuration and guest
//! attachment and its whole running state (every flow with its TCP state
//! and layer state, NAT translations among them, the counters, the rate
//! limiter's buckets), and the requests of the steps around it.
//!
//! The steps (`sluiceadm migrate-out` runs them in this order):
//!
//! 1. cut-over on the source (`POST /ports/{name}/migration/cutover`): in
//!    one job on the port's worker the port stops forwarding, lets go of
//!    its guest device (a TAP's queue, for the target to take) and is
//!    exported; for the grace period whatever still arrives for its guest
//!    is tunnelled on to the target (counted), then the port is deleted.
//!    `GET /ports/{name}/migration` exports without cutting over.
//! 2. import on the target (`PUT /ports/{name}/migration`): the document's
//!    version and the port's VNI, MAC, addresses and name are checked
//!    against the target's ports (a conflict is refused, named), the port
//!    is created, and its flows are rebuilt before the guest's first
//!    packet there (each walks the target's layers once, keeping its NAT
//!    translation: see `dataplane/src/port/migrate.rs`).
//! 3. the V2P mapping of the guest's addresses moves to the target host
//!    (the existing `PUT /v2p`, on every host that has it).
//!
//! `DELETE /ports/{name}/migration` aborts on the source: it resumes
//! forwarding and reopens its guest device (within the guest retry's 2 s).

use crate::types::{CreateVnic, GuestSpec, PortSummary};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;

/// The version of [`MigrationDoc`] this build writes and reads. A document
/// of another version is refused, never misread.
pub const MIGRATION_VERSION: u32 = 1;

/// Grace period after a cut-over when the request names none, seconds.
/// Long enough for the V2P change to reach every host and for the guest's
/// peers to retransmit into the new path; short enough that a forgotten
/// cut-over does not hold the port's SNAT ports for long.
pub const DEFAULT_GRACE_SECS: u64 = 30;

/// A port's whole state, from its source host.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct MigrationDoc {
    /// [`MIGRATION_VERSION`] of the host that wrote it.
    pub version: u32,
    /// The source host's underlay address.
    pub source_underlay: Ipv6Addr,
    /// Whether the source cut the port over when it wrote this (it then
    /// forwards nothing itself).
    pub cut_over: bool,
    /// The port's configuration and guest attachment, as `POST /ports`
    /// takes them.
    pub port: CreateVnic,
    /// Flows (first packet's headers, TCP state, age, idle time, counters,
    /// each stateful layer's state), the port's counters and rate buckets.
    pub state: dataplane::PortExport,
}

/// `POST /ports/{name}/migration/cutover`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CutOver {
    /// The target host's underlay address: what still arrives for the
    /// guest is tunnelled there.
    pub target_underlay: Ipv6Addr,
    /// How long the source keeps forwarding before it deletes the port
    /// (default 30 s, at most 3600).
    #[serde(default)]
    pub grace_secs: Option<u64>,
}

/// `PUT /ports/{name}/migration`: a document to import, and optionally
/// another guest attachment than the source's (the device as this host
/// opens it, e.g. the TAP in the guest's namespace).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportMigration {
    /// A [`MigrationDoc`]; its `version` is checked before anything else
    /// (read as JSON first, so a document of another version is refused
    /// for its version, not for a field it lacks).
    #[schemars(with = "MigrationDoc")]
    pub document: serde_json::Value,
    #[serde(default)]
    pub guest: Option<GuestSpec>,
}

/// What an import made.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct MigrationImported {
    pub port: PortSummary,
    /// Flows rebuilt here, working from their first packet.
    pub flows_imported: usize,
    /// Flows the document had that this host's rules refused or had no
    /// room for.
    pub flows_refused: usize,
}

/// A port's cut-over, as the source sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct MigrationStatus {
    pub port: String,
    /// The target host while the port is cut over; absent otherwise.
    pub target_underlay: Option<Ipv6Addr>,
    /// Seconds left of the grace period.
    pub grace_left_secs: Option<u64>,
    /// Tunnels for the guest sent on to the target.
    pub forwarded: u64,
    /// Tunnels that could not be sent on.
    pub forward_dropped: u64,
    /// Frames the guest still sent here (dropped).
    pub guest_dropped: u64,
}
