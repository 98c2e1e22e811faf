//! Actions: what a matching rule does with a packet.
//!
//! The stateless actions decide from the packet alone. The stateful ones
//! create state in the layer's flow table that the flow's later packets,
//! and its replies, find before any rule is consulted: `StatefulAllow`
//! remembers "this flow was allowed", `Stateful` runs a generator once per
//! flow that allocates something (a NAT port) and describes the rewrite for
//! both directions. The state lives as long as the flow does; dropping the
//! descriptor frees what the generator allocated.

use crate::flow::{Direction, FlowKey};
use crate::headers::Headers;
use crate::meta::Meta;
use crate::packet::PacketBuf;
use crate::transform::Transform;
use core::fmt;
use core::ops::Deref;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub enum Action {
    /// Pass the packet to the next layer.
    Allow,
    /// Drop the packet.
    Deny,
    /// Drop the packet, counted under this policy reason (a stable
    /// snake_case name, e.g. `spoofed_source`).
    DenyWith(&'static str),
    /// Pass, and remember the flow so its replies pass too.
    StatefulAllow,
    /// Rewrite headers the same way for every packet that matches.
    Static(Arc<dyn StaticAction>),
    /// Allocate per-flow state and rewrite headers accordingly (NAT).
    Stateful(StatefulRef),
    /// Answer the packet: build a reply that goes back to where it came from.
    Hairpin(Arc<dyn HairpinAction>),
    /// Set metadata for later layers, and pass.
    Meta(Arc<dyn MetaAction>),
}

/// The identity of a stateful action: what a flow's state remembers so a
/// re-check after a rule change can tell "the action that made this state
/// still decides" (keep the state, e.g. the NAT port) from "another action
/// decides now" (make new state). Taken from a counter when the action is
/// wrapped in a [`StatefulRef`] and never reused, unlike the action's
/// address, which a new action can be given once the old one is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionId(u64);

impl ActionId {
    /// `StatefulAllow` keeps nothing but "allowed", the same whichever
    /// rule said so: one identity for all of them.
    pub const STATEFUL_ALLOW: ActionId = ActionId(0);

    fn next() -> ActionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ActionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// A stateful action and its [`ActionId`]. Clones share both, so the same
/// action placed in a new rule or a rebuilt rule-set is still recognised;
/// wrapping an action again gives it a new identity.
#[derive(Clone)]
pub struct StatefulRef {
    id: ActionId,
    action: Arc<dyn StatefulAction>,
}

impl StatefulRef {
    pub fn new(action: Arc<dyn StatefulAction>) -> StatefulRef {
        StatefulRef {
            id: ActionId::next(),
            action,
        }
    }

    pub fn id(&self) -> ActionId {
        self.id
    }
}

impl Deref for StatefulRef {
    type Target = dyn StatefulAction;
    fn deref(&self) -> &Self::Target {
        &*self.action
    }
}

impl From<Arc<dyn StatefulAction>> for StatefulRef {
    fn from(a: Arc<dyn StatefulAction>) -> StatefulRef {
        StatefulRef::new(a)
    }
}

impl<T: StatefulAction + 'static> From<Arc<T>> for StatefulRef {
    fn from(a: Arc<T>) -> StatefulRef {
        StatefulRef::new(a)
    }
}

impl fmt::Display for StatefulRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.action, f)
    }
}

/// Why an action could not produce its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    /// A resource the action allocates from is used up (e.g. NAT ports).
    #[error("resource exhausted: {0}")]
    Exhausted(&'static str),
    /// The action refuses the packet, for the reason named (a stable
    /// snake_case name; the packet is counted as that policy drop).
    #[error("action refused the packet: {0}")]
    Refused(&'static str),
}

pub trait StaticAction: Send + Sync + fmt::Display {
    /// The rewrite for this packet. May also set metadata for later layers.
    fn transform(
        &self,
        dir: Direction,
        hdrs: &Headers,
        meta: &mut Meta,
    ) -> Result<Transform, GenError>;
}

pub trait StatefulAction: Send + Sync + fmt::Display {
    /// Called once, for the first packet of a flow, in direction `dir`.
    fn generate(
        &self,
        dir: Direction,
        key: &FlowKey,
        hdrs: &Headers,
        meta: &Meta,
    ) -> Result<Arc<dyn ActionDesc>, GenError>;

    /// Re-creates the per-flow state another host's port exported
    /// ([`DescState`]) for a flow carried here by a migration, taking
    /// exactly the resources it names (a SNAT port, say) so this host
    /// hands them to no other flow. `None`: this action cannot restore
    /// it (not its kind of state, or the resource is not this action's):
    /// the flow's first walk here generates its state afresh.
    fn restore(
        &self,
        _dir: Direction,
        _key: &FlowKey,
        _state: &DescState,
    ) -> Option<Arc<dyn ActionDesc>> {
        None
    }
}

/// The address and port rewrites of one direction of a flow's stateful
/// state: what a migration carries of an [`ActionDesc`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_src: Option<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_dst: Option<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4_src: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4_dst: Option<u16>,
}

/// A flow's stateful state as a migration carries it: the rewrites of
/// both directions (NAT's whole per-flow state is its rewrites).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DescState {
    pub out: Rewrite,
    #[serde(rename = "in")]
    pub inbound: Rewrite,
}

impl DescState {
    pub fn of(d: &dyn ActionDesc) -> DescState {
        let r = |t: Transform| Rewrite {
            ip_src: t.ip_src,
            ip_dst: t.ip_dst,
            l4_src: t.l4_src,
            l4_dst: t.l4_dst,
        };
        DescState {
            out: r(d.transform(Direction::Out)),
            inbound: r(d.transform(Direction::In)),
        }
    }
}

/// The per-flow result of a stateful action. Held by the layer's flow
/// table for both directions of the flow; dropped when the flow expires.
pub trait ActionDesc: Send + Sync + fmt::Debug {
    /// The rewrite for a packet going `dir` (the flow's first direction or
    /// its reverse).
    fn transform(&self, dir: Direction) -> Transform;
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

pub trait HairpinAction: Send + Sync + fmt::Display {
    /// Builds the reply to `frame`. The engine sends it back the way the
    /// packet came and drops the packet itself.
    fn reply(&self, hdrs: &Headers, frame: &[u8], meta: &Meta) -> Result<PacketBuf, GenError>;
}

pub trait MetaAction: Send + Sync + fmt::Display {
    fn update(&self, dir: Direction, hdrs: &Headers, meta: &mut Meta);
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny | Action::DenyWith(_) => "deny",
            Action::StatefulAllow => "stateful-allow",
            Action::Static(_) => "static",
            Action::Stateful(_) => "stateful",
            Action::Hairpin(_) => "hairpin",
            Action::Meta(_) => "meta",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Allow | Action::Deny | Action::StatefulAllow => f.write_str(self.kind()),
            Action::DenyWith(r) => write!(f, "deny({r})"),
            Action::Static(a) => write!(f, "static({a})"),
            Action::Stateful(a) => write!(f, "stateful({a})"),
            Action::Hairpin(a) => write!(f, "hairpin({a})"),
            Action::Meta(a) => write!(f, "meta({a})"),
        }
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
