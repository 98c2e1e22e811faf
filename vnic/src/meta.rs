//! Metadata slots the VPC layers use to talk to each other (see
//! `dataplane::meta`): a layer decides, a later one acts. The slots are
//! defined by the overlay, which the router's decisions are for.

pub use overlay::layer::meta::{ROUTE_ARG, ROUTE_KIND, SRC_VNI};
