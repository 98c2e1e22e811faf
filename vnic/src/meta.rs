//! Metadata slots the VPC layers use to talk to each other (see
//! `dataplane::meta`): a layer decides, a later one acts.

use dataplane::MetaKey;

/// Set by the overlay on inbound packets: the VNI they arrived on.
pub const SRC_VNI: MetaKey = MetaKey(0);
/// Set by the router on outbound packets: a [`crate::router::RouteKind`].
pub const ROUTE_KIND: MetaKey = MetaKey(1);
/// Set by the router with `ROUTE_KIND`: an index into the port's next hops
/// (for `Ip` targets) or of the VPC subnet route.
pub const ROUTE_ARG: MetaKey = MetaKey(2);
