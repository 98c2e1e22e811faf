//! Per-port rate limits: token buckets on what the guest sends, so one
//! guest flooding its port cannot take its worker from the other ports
//! the worker serves.
//!
//! A port checks its limiter first, before parsing, so a packet over the
//! limit costs one clock read and a few integer operations, never a walk
//! of the layers. It is counted as `rate_limited`.
//!
//! Two buckets, either optional: packets per second and bytes per second,
//! each with a depth (the burst). A packet passes when the packet bucket
//! holds a whole token and the byte bucket is not empty; it then takes one
//! packet token and its length in byte tokens. The byte bucket may go into
//! debt by one packet, so a frame larger than the burst (a TSO segment) is
//! still sent, and paid for by the time that follows. Over any interval
//! `t` the port passes at most `rate × t + burst` packets (and bytes, plus
//! one packet's worth).
//!
//! Integer arithmetic only: a bucket's level is in token-nanoseconds
//! (tokens × 10⁹), so refilling is `elapsed_ns × rate`, exact.

use crate::clock::{Moment, NANOS_PER_SEC};
use serde::{Deserialize, Serialize};

/// The largest rates and bursts accepted: far above any NIC (10⁹ packets/s,
/// 10¹² bytes/s = 8 Tbit/s), low enough that no arithmetic is near overflow.
pub const MAX_PACKETS_PER_SEC: u64 = 1_000_000_000;
pub const MAX_BYTES_PER_SEC: u64 = 1_000_000_000_000;

/// A port's rate limit on guest egress, as configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Packets per second the guest may send; absent or 0: no packet limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub packets_per_sec: u64,
    /// Bytes per second (frame bytes, Ethernet header included); absent or
    /// 0: no byte limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_per_sec: u64,
    /// Packets that may be sent at once above the rate. Default: a tenth
    /// of a second's worth, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_packets: Option<u64>,
    /// Bytes that may be sent at once above the rate. Default: a tenth of
    /// a second's worth, at least one 9216-byte jumbo frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_bytes: Option<u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A bad rate-limit field: its name (relative to the rate limit) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct RateLimitError {
    pub field: &'static str,
    pub problem: String,
}

impl RateLimit {
    /// The packet bucket's depth, in packets (0 without a packet limit).
    pub fn packet_burst(&self) -> u64 {
        match (self.packets_per_sec, self.burst_packets) {
            (0, _) => 0,
            (_, Some(b)) => b,
            (r, None) => (r / 10).max(1),
        }
    }

    /// The byte bucket's depth, in bytes (0 without a byte limit).
    pub fn byte_burst(&self) -> u64 {
        match (self.bytes_per_sec, self.burst_bytes) {
            (0, _) => 0,
            (_, Some(b)) => b,
            (r, None) => (r / 10).max(9216),
        }
    }

    pub fn validate(&self) -> Result<(), RateLimitError> {
        let bad = |field, problem: String| Err(RateLimitError { field, problem });
        if self.packets_per_sec == 0 && self.bytes_per_sec == 0 {
            return bad(
                "packets_per_sec",
                "a rate limit needs packets_per_sec or bytes_per_sec (to remove the limit, send null)"
                    .into(),
            );
        }
        if self.packets_per_sec > MAX_PACKETS_PER_SEC {
            return bad(
                "packets_per_sec",
                format!(
                    "{} is above the maximum {MAX_PACKETS_PER_SEC}",
                    self.packets_per_sec
                ),
            );
        }
        if self.bytes_per_sec > MAX_BYTES_PER_SEC {
            return bad(
                "bytes_per_sec",
                format!(
                    "{} is above the maximum {MAX_BYTES_PER_SEC}",
                    self.bytes_per_sec
                ),
            );
        }
        for (field, burst, rate, max) in [
            (
                "burst_packets",
                self.burst_packets,
                self.packets_per_sec,
                MAX_PACKETS_PER_SEC,
            ),
            (
                "burst_bytes",
                self.burst_bytes,
                self.bytes_per_sec,
                MAX_BYTES_PER_SEC,
            ),
        ] {
            match burst {
                Some(_) if rate == 0 => {
                    return bad(
                        field,
                        "a burst needs the matching rate (packets_per_sec or bytes_per_sec)".into(),
                    )
                }
                Some(b) if b == 0 || b > max => {
                    return bad(field, format!("{b} is out of range 1..={max}"))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

const UNIT: i128 = NANOS_PER_SEC as i128;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens per second.
    rate: i128,
    /// The most the bucket holds, in token-nanoseconds.
    depth: i128,
    level: i128,
}

impl Bucket {
    fn new(rate: u64, burst: u64) -> Option<Bucket> {
        (rate > 0).then(|| {
            let depth = i128::from(burst) * UNIT;
            Bucket {
                rate: i128::from(rate),
                depth,
                level: depth,
            }
        })
    }

    #[inline]
    fn refill(&mut self, elapsed_ns: u64) {
        self.level = (self.level + i128::from(elapsed_ns) * self.rate).min(self.depth);
    }
}

/// The running state of a [`RateLimit`]: starts with full buckets.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    packets: Option<Bucket>,
    bytes: Option<Bucket>,
    last: Option<Moment>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            packets: Bucket::new(limit.packets_per_sec, limit.packet_burst()),
            bytes: Bucket::new(limit.bytes_per_sec, limit.byte_burst()),
            last: None,
        }
    }

    pub fn limit(&self) -> &RateLimit {
        &self.limit
    }

    /// The buckets' levels in whole tokens (packets, bytes), as a
    /// migration carries them: `None` for a bucket the limit does not have.
    pub fn levels(&self) -> (Option<u64>, Option<u64>) {
        let whole = |b: &Bucket| u64::try_from(b.level.max(0) / UNIT).unwrap_or(u64::MAX);
        (
            self.packets.as_ref().map(whole),
            self.bytes.as_ref().map(whole),
        )
    }

    /// Sets the buckets' levels (whole tokens, capped at their depth), as
    /// another host's limiter had them; refilling starts at its next packet.
    pub fn set_levels(&mut self, packets: Option<u64>, bytes: Option<u64>) {
        let set = |b: &mut Bucket, v: u64| b.level = (i128::from(v) * UNIT).min(b.depth);
        if let (Some(b), Some(v)) = (self.packets.as_mut(), packets) {
            set(b, v);
        }
        if let (Some(b), Some(v)) = (self.bytes.as_mut(), bytes) {
            set(b, v);
        }
        self.last = None;
    }

    /// Whether a frame of `len` bytes may pass at `now`; if so, it is paid
    /// for. A clock that steps back refills nothing.
    #[inline]
    pub fn admit(&mut self, now: Moment, len: usize) -> bool {
        let elapsed = self.last.map_or(0, |t| now.saturating_sub(t));
        if self.last.is_none_or(|t| now > t) {
            self.last = Some(now);
        }
        if let Some(b) = &mut self.packets {
            b.refill(elapsed);
        }
        if let Some(b) = &mut self.bytes {
            b.refill(elapsed);
        }
        let packet_ok = self.packets.is_none_or(|b| b.level >= UNIT);
        let bytes_ok = self.bytes.is_none_or(|b| b.level > 0);
        if !(packet_ok && bytes_ok) {
            return false;
        }
        if let Some(b) = &mut self.packets {
            b.level -= UNIT;
        }
        if let Some(b) = &mut self.bytes {
            b.level -= len as i128 * UNIT;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pps(rate: u64, burst: u64) -> RateLimit {
        RateLimit {
            packets_per_sec: rate,
            burst_packets: Some(burst),
            ..RateLimit::default()
        }
    }

    /// Sends one packet every `gap_ns` for `n` packets; returns how many passed.
    fn offer(l: &mut RateLimiter, start: Moment, gap_ns: u64, n: u64, len: usize) -> u64 {
        (0..n).filter(|i| l.admit(start + i * gap_ns, len)).count() as u64
    }

    #[test]
    fn a_flood_gets_the_rate_plus_the_burst() {
        let mut l = RateLimiter::new(pps(1000, 50));
        // 100 000 packets offered in one second (10 µs apart).
        let passed = offer(&mut l, 0, 10_000, 100_000, 64);
        // 50 at once, then one per millisecond for the ~1 s that follows.
        assert!((1049..=1050).contains(&passed), "{passed}");
    }

    #[test]
    fn under_the_rate_everything_passes() {
        let mut l = RateLimiter::new(pps(1000, 1));
        // One packet every 2 ms: half the rate.
        assert_eq!(offer(&mut l, 0, 2_000_000, 500, 1500), 500);
    }

    #[test]
    fn bytes_are_limited_and_a_big_frame_goes_into_debt() {
        let mut l = RateLimiter::new(RateLimit {
            bytes_per_sec: 1_000_000,
            burst_bytes: Some(10_000),
            ..RateLimit::default()
        });
        // A 64 KB segment passes on a full bucket, the next waits for the
        // debt to be repaid (54 ms at 1 MB/s).
        assert!(l.admit(0, 65_536));
        assert!(!l.admit(1_000_000, 64));
        assert!(!l.admit(55_000_000, 64));
        assert!(l.admit(56_000_000, 64));
        // Over a second of 1000-byte frames every 100 µs: ~1 MB passes.
        let mut l = RateLimiter::new(RateLimit {
            bytes_per_sec: 1_000_000,
            burst_bytes: Some(10_000),
            ..RateLimit::default()
        });
        let passed = offer(&mut l, 0, 100_000, 10_000, 1000);
        assert!((1009..=1011).contains(&passed), "{passed}");
    }

    #[test]
    fn the_clock_stepping_back_gives_nothing() {
        let mut l = RateLimiter::new(pps(10, 1));
        assert!(l.admit(5 * NANOS_PER_SEC, 64));
        assert!(!l.admit(NANOS_PER_SEC, 64));
        assert!(!l.admit(5 * NANOS_PER_SEC, 64));
        assert!(l.admit(5 * NANOS_PER_SEC + NANOS_PER_SEC / 10, 64));
    }

    #[test]
    fn the_largest_values_do_not_overflow() {
        let mut l = RateLimiter::new(RateLimit {
            packets_per_sec: MAX_PACKETS_PER_SEC,
            bytes_per_sec: MAX_BYTES_PER_SEC,
            burst_packets: Some(MAX_PACKETS_PER_SEC),
            burst_bytes: Some(MAX_BYTES_PER_SEC),
        });
        assert!(l.admit(0, usize::MAX >> 8));
        assert!(l.admit(u64::MAX, 64));
    }

    #[test]
    fn bad_limits_name_the_field() {
        let cases = [
            (RateLimit::default(), "packets_per_sec"),
            (pps(MAX_PACKETS_PER_SEC + 1, 1), "packets_per_sec"),
            (pps(10, 0), "burst_packets"),
            (
                RateLimit {
                    bytes_per_sec: 10,
                    burst_packets: Some(5),
                    ..RateLimit::default()
                },
                "burst_packets",
            ),
            (
                RateLimit {
                    bytes_per_sec: MAX_BYTES_PER_SEC + 1,
                    ..RateLimit::default()
                },
                "bytes_per_sec",
            ),
        ];
        for (l, field) in cases {
            assert_eq!(l.validate().unwrap_err().field, field, "{l:?}");
        }
        pps(10, 1).validate().unwrap();
        assert_eq!(
            RateLimit {
                packets_per_sec: 5,
                ..RateLimit::default()
            }
            .packet_burst(),
            1
        );
    }
}
