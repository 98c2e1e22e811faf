//! The NAT layer (being written).
