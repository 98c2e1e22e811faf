//! TCP connection tracking for flow expiry.
//!
//! The engine follows each TCP flow through the states of RFC 9293 §3.3.2
//! as a middlebox sees them (both ends' segments), only far enough to know
//! how long an idle flow may keep its slot:
//!
//! - half-open (`SynSent`, `SynReceived`, and `Unverified` for a flow
//!   picked up mid-stream) expires fast, so a SYN flood cannot hold slots;
//! - `Established` expires slowly;
//! - closing (`FinWait`, `LastAck`), `TimeWait` and `Closed` (after a RST)
//!   sit in between.
//!
//! Sequence numbers are not checked (the endpoints do that); a RST is taken
//! at its word.

use crate::clock::{Moment, NANOS_PER_SEC};
use crate::headers::tcp_flags::{ACK, FIN, RST, SYN};
use serde::{Deserialize, Serialize};

/// Which end of the flow sent a segment: the one that opened it (the first
/// packet the port saw) or the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Originator,
    Responder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    /// First segment was not a SYN (the flow predates the port, or its
    /// entry was evicted); becomes `Established` once the other end answers.
    Unverified,
    /// The originator sent a SYN.
    SynSent,
    /// The responder answered with SYN+ACK.
    SynReceived,
    Established,
    /// One end sent a FIN.
    FinWait {
        first: SideBit,
    },
    /// Both ends sent a FIN; waiting for the ACK of the second.
    LastAck {
        second: SideBit,
    },
    /// Both FINs acknowledged.
    TimeWait,
    /// A RST was seen.
    Closed,
}

/// A `Side` that serialises compactly inside `TcpState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SideBit {
    Originator,
    Responder,
}

impl From<Side> for SideBit {
    fn from(s: Side) -> SideBit {
        match s {
            Side::Originator => SideBit::Originator,
            Side::Responder => SideBit::Responder,
        }
    }
}

/// The expiry class of a flow: which idle timeout applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryClass {
    TcpHalfOpen,
    TcpEstablished,
    TcpClosing,
    TcpTimeWait,
    TcpClosed,
    Udp,
    Icmp,
    Other,
}

impl TcpState {
    /// The state of a flow whose first segment carried `flags`.
    pub fn initial(flags: u8) -> TcpState {
        if flags & RST != 0 {
            TcpState::Closed
        } else if flags & SYN != 0 && flags & ACK == 0 {
            TcpState::SynSent
        } else {
            TcpState::Unverified
        }
    }

    /// The state after a segment with `flags` from `side`.
    pub fn next(self, side: Side, flags: u8) -> TcpState {
        use TcpState::*;
        if flags & RST != 0 {
            return Closed;
        }
        let syn = flags & SYN != 0;
        let ack = flags & ACK != 0;
        let fin = flags & FIN != 0;
        let by = SideBit::from(side);
        match self {
            // A new SYN from the originator after the end of a connection
            // reuses the tuple (RFC 9293 §3.10.7.4 allows it in TIME-WAIT).
            Closed | TimeWait if syn && !ack && side == Side::Originator => SynSent,
            Closed | TimeWait => self,
            SynSent if syn && ack && side == Side::Responder => SynReceived,
            SynSent => SynSent,
            SynReceived if fin => FinWait { first: by },
            SynReceived if ack && side == Side::Originator => Established,
            SynReceived => SynReceived,
            Unverified if fin => FinWait { first: by },
            Unverified if side == Side::Responder => Established,
            Unverified => Unverified,
            Established if fin => FinWait { first: by },
            Established => Established,
            FinWait { first } if fin && first != by => LastAck { second: by },
            FinWait { .. } => self,
            // The ACK of the second FIN comes from the end that did not send it.
            LastAck { second } if ack && !fin && second != by => TimeWait,
            LastAck { .. } => self,
        }
    }

    pub fn class(self) -> ExpiryClass {
        match self {
            TcpState::Unverified | TcpState::SynSent | TcpState::SynReceived => {
                ExpiryClass::TcpHalfOpen
            }
            TcpState::Established => ExpiryClass::TcpEstablished,
            TcpState::FinWait { .. } | TcpState::LastAck { .. } => ExpiryClass::TcpClosing,
            TcpState::TimeWait => ExpiryClass::TcpTimeWait,
            TcpState::Closed => ExpiryClass::TcpClosed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TcpState::Unverified => "UNVERIFIED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynReceived => "SYN_RCVD",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait { .. } => "FIN_WAIT",
            TcpState::LastAck { .. } => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Closed => "CLOSED",
        }
    }
}

/// Idle timeouts per expiry class, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExpiryPolicy {
    /// 5 s: a SYN flood must not hold flow slots; a real handshake that
    /// stalls longer retransmits and simply makes a new flow.
    pub tcp_half_open: u64,
    /// 1 h idle: long-lived idle connections (ssh, databases) keep working
    /// without keepalives shorter than common OS defaults' first probe.
    pub tcp_established: u64,
    /// 120 s for FIN_WAIT/LAST_ACK, as Linux conntrack's FIN_WAIT.
    pub tcp_closing: u64,
    /// 30 s: long enough for late retransmissions, short enough to reuse
    /// NAT ports quickly.
    pub tcp_time_wait: u64,
    /// 10 s after a RST, so stray segments of the dead flow are still
    /// recognised rather than treated as a new flow.
    pub tcp_closed: u64,
    /// 60 s: DNS and other request/response UDP are done long before.
    pub udp: u64,
    /// 30 s for ICMP echo.
    pub icmp: u64,
    /// 60 s for other IP protocols.
    pub other: u64,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        ExpiryPolicy {
            tcp_half_open: 5,
            tcp_established: 3600,
            tcp_closing: 120,
            tcp_time_wait: 30,
            tcp_closed: 10,
            udp: 60,
            icmp: 30,
            other: 60,
        }
    }
}

impl ExpiryPolicy {
    pub fn ttl(&self, class: ExpiryClass) -> Moment {
        let s = match class {
            ExpiryClass::TcpHalfOpen => self.tcp_half_open,
            ExpiryClass::TcpEstablished => self.tcp_established,
            ExpiryClass::TcpClosing => self.tcp_closing,
            ExpiryClass::TcpTimeWait => self.tcp_time_wait,
            ExpiryClass::TcpClosed => self.tcp_closed,
            ExpiryClass::Udp => self.udp,
            ExpiryClass::Icmp => self.icmp,
            ExpiryClass::Other => self.other,
        };
        s.saturating_mul(NANOS_PER_SEC)
    }

    /// Whether a flow of `class` last seen at `last_hit` is past its idle
    /// timeout at `now`. The sweep and every lookup use this one test.
    #[inline]
    pub fn is_expired(&self, class: ExpiryClass, last_hit: Moment, now: Moment) -> bool {
        now.saturating_sub(last_hit) > self.ttl(class)
    }
}

#[cfg(test)]
mod tests {
    use super::Side::{Originator as O, Responder as R};
    use super::*;

    fn run(steps: &[(Side, u8)]) -> TcpState {
        let mut s = TcpState::initial(steps[0].1);
        for &(side, f) in &steps[1..] {
            s = s.next(side, f);
        }
        s
    }

    // RFC 9293 §3.5 figure 6: the basic three-way handshake.
    #[test]
    fn handshake() {
        assert_eq!(run(&[(O, SYN)]), TcpState::SynSent);
        assert_eq!(run(&[(O, SYN), (R, SYN | ACK)]), TcpState::SynReceived);
        assert_eq!(
            run(&[(O, SYN), (R, SYN | ACK), (O, ACK)]),
            TcpState::Established
        );
        // The originator's ACK is what establishes it, not the responder's.
        assert_eq!(
            run(&[(O, SYN), (R, SYN | ACK), (R, ACK)]),
            TcpState::SynReceived
        );
    }

    // RFC 9293 §3.6 figure 12: normal close, then simultaneous close.
    #[test]
    fn close() {
        let est = [(O, SYN), (R, SYN | ACK), (O, ACK)];
        let mut v = est.to_vec();
        v.push((O, FIN | ACK));
        assert!(matches!(
            run(&v),
            TcpState::FinWait {
                first: SideBit::Originator
            }
        ));
        v.push((R, ACK));
        assert!(matches!(run(&v), TcpState::FinWait { .. }));
        v.push((R, FIN | ACK));
        assert!(matches!(
            run(&v),
            TcpState::LastAck {
                second: SideBit::Responder
            }
        ));
        v.push((O, ACK));
        assert_eq!(run(&v), TcpState::TimeWait);

        let mut s = est.to_vec();
        s.push((O, FIN | ACK));
        s.push((R, FIN | ACK));
        s.push((O, ACK));
        assert_eq!(run(&s), TcpState::TimeWait);
    }

    #[test]
    fn rst_and_reuse() {
        assert_eq!(run(&[(O, SYN), (R, RST | ACK)]), TcpState::Closed);
        assert_eq!(run(&[(O, SYN), (R, RST), (O, SYN)]), TcpState::SynSent);
        assert_eq!(TcpState::initial(RST), TcpState::Closed);
        // A stray ACK after close does not revive the flow.
        assert_eq!(run(&[(O, SYN), (R, RST), (O, ACK)]), TcpState::Closed);
    }

    #[test]
    fn pickup_mid_stream() {
        assert_eq!(run(&[(O, ACK)]), TcpState::Unverified);
        assert_eq!(run(&[(O, ACK), (O, ACK)]), TcpState::Unverified);
        assert_eq!(run(&[(O, ACK), (R, ACK)]), TcpState::Established);
    }

    #[test]
    fn classes_order_timeouts() {
        let p = ExpiryPolicy::default();
        let half = p.ttl(ExpiryClass::TcpHalfOpen);
        let est = p.ttl(ExpiryClass::TcpEstablished);
        for c in [
            ExpiryClass::TcpClosing,
            ExpiryClass::TcpTimeWait,
            ExpiryClass::TcpClosed,
        ] {
            assert!(half < p.ttl(c) && p.ttl(c) < est, "{c:?}");
        }
    }
}
