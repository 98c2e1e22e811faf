//! sluice's packet-processing engine.
//!
//! A [`port::Port`] holds one vNIC's ordered [`layer::Layer`]s. Each layer
//! has rules ([`rule::Rule`]: priority, predicates, [`action::Action`]) for
//! each direction and a flow table for stateful actions. The first packet
//! of a flow walks the layers; their header transforms
//! ([`transform::Transform`]) are composed and compiled once, and every
//! later packet of the flow, in either direction, takes the fast path: one
//! lookup in the port's unified flow table and one compiled transform.
//!
//! The engine does no I/O, spawns no threads and knows nothing of VPCs:
//! the `vnic` and `overlay` crates build ports for a tenant network, and
//! `vmm-net` moves the frames.

pub mod action;
pub mod addr;
pub mod checksum;
pub mod clock;
pub mod drop;
pub mod flow;
pub mod flowlog;
pub mod headers;
pub mod layer;
pub mod meta;
pub mod packet;
pub mod port;
pub mod rate;
pub mod rule;
pub mod tcp;
pub mod transform;

pub use action::{
    Action, ActionDesc, ActionId, DescState, GenError, HairpinAction, MetaAction, Rewrite,
    StatefulAction, StatefulRef, StaticAction,
};
pub use addr::{IpCidr, PortRange};
pub use clock::{Clock, ManualClock, Moment, MonotonicClock};
pub use drop::DropReason;
pub use flow::{Direction, FlowKey};
pub use flowlog::{
    CloseReason, Decider, Decision, FlowLog, FlowLogConfig, FlowLogStats, FlowRecord, LayerName,
};
pub use headers::{Headers, ParseMode, Vni};
pub use layer::{DefaultAction, LayerConfig};
pub use meta::{Meta, MetaKey};
pub use packet::{Gso, PacketBuf};
pub use port::{
    FlowExport, ImportCount, KeyDoc, LftExport, Port, PortConfig, PortExport, StatsExport, Verdict,
};
pub use rate::{RateLimit, RateLimiter};
pub use rule::{Predicate, Rule, RuleId};
pub use transform::{Compiled, Dep, Encap, GeneveOptions, Transform, Version};
