//! sluice's Geneve options and the receive policy for options.
//!
//! # Option class
//!
//! RFC 8926 §3.5 has IANA assign option classes; in the "Geneve Option
//! Class" registry (RFC 8926 §7) the range 0xFF00-0xFFFF is reserved for
//! Experimental Use.
//! sluice has no assigned class, so it uses [`SLUICE_OPT_CLASS`] = 0xFF59
//! from that range: its options only ever travel between sluice hosts and
//! boundaries of one deployment, which is what the range is for. A
//! deployment that shares its underlay with another user of 0xFF59 must
//! pick another value (it is one constant); an assigned class replaces it
//! if sluice's options are ever exchanged with other implementations.
//!
//! # Options
//!
//! - [`EXTERNAL`] (type 0x01, not critical, no data): the packet is going
//!   to or coming from the internet through a boundary, so its inner
//!   addresses are external ones that V2P does not know. Not critical: a
//!   receiver that does not know it can still deliver the packet as a
//!   plain VPC packet.
//!
//! # Receive policy
//!
//! [`check_options`] fails closed. A critical option (type high bit set)
//! that sluice does not know drops the packet, as RFC 8926 §3.5 requires
//! of a receiver ("MUST drop"); options that do not fit the options area
//! drop it too; unknown non-critical options are skipped, as the RFC
//! allows.

use dataplane::headers::{geneve_options, GENEVE_MAX_OPT_LEN};
use dataplane::GeneveOptions;

/// sluice's Geneve option class, from the experimental range 0xFF00-0xFFFF.
pub const SLUICE_OPT_CLASS: u16 = 0xFF59;

/// Option type: the packet goes to or comes from the internet via a
/// boundary. Not critical, no data.
pub const EXTERNAL: u8 = 0x01;

/// What sluice's options said about a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionSummary {
    /// The [`EXTERNAL`] option was present.
    pub external: bool,
}

/// Why a packet's options refuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("unknown critical Geneve option class {class:#06x} type {ty:#04x}")]
    UnknownCritical { class: u16, ty: u8 },
    #[error("malformed Geneve options")]
    Malformed,
}

/// The options sluice pushes on traffic to or from a boundary.
pub fn external_option() -> GeneveOptions {
    let mut o = GeneveOptions::EMPTY;
    // 4 bytes: always fits in the empty set (MAX_GENEVE_OPTS is 56).
    if o.push(SLUICE_OPT_CLASS, EXTERNAL, &[]).is_err() {
        return GeneveOptions::EMPTY;
    }
    o
}

/// Checks a Geneve options area (the `opt_len` bytes after the fixed
/// header) against sluice's policy; see the module documentation. Bounded
/// by the area (at most 63 options); never panics, whatever the bytes.
pub fn check_options(opts: &[u8]) -> Result<OptionSummary, OptionError> {
    if opts.len() > GENEVE_MAX_OPT_LEN {
        return Err(OptionError::Malformed);
    }
    let mut s = OptionSummary::default();
    for o in geneve_options(opts) {
        let o = o.map_err(|_| OptionError::Malformed)?;
        match (o.class, o.ty) {
            (SLUICE_OPT_CLASS, EXTERNAL) => {
                // Ours, and defined to carry nothing.
                if !o.data.is_empty() {
                    return Err(OptionError::Malformed);
                }
                s.external = true;
            }
            (class, ty) if o.critical() => {
                return Err(OptionError::UnknownCritical { class, ty });
            }
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_round_trip() {
        let o = external_option();
        assert_eq!(o.as_bytes(), &[0xff, 0x59, 0x01, 0x00]);
        assert!(!o.has_critical());
        assert_eq!(
            check_options(o.as_bytes()),
            Ok(OptionSummary { external: true })
        );
        assert_eq!(check_options(&[]), Ok(OptionSummary::default()));
    }

    #[test]
    fn unknown_non_critical_is_ignored() {
        let mut o = GeneveOptions::EMPTY;
        o.push(0x0129, 0x05, &[1, 2, 3, 4]).unwrap();
        o.push(SLUICE_OPT_CLASS, 0x7f, &[]).unwrap();
        assert_eq!(check_options(o.as_bytes()), Ok(OptionSummary::default()));
        o.push(SLUICE_OPT_CLASS, EXTERNAL, &[]).unwrap();
        assert_eq!(
            check_options(o.as_bytes()),
            Ok(OptionSummary { external: true })
        );
    }

    #[test]
    fn unknown_critical_fails_closed() {
        let mut o = external_option();
        o.push(0x0129, 0x85, &[]).unwrap();
        assert_eq!(
            check_options(o.as_bytes()),
            Err(OptionError::UnknownCritical {
                class: 0x0129,
                ty: 0x85
            })
        );
        // Our class with the critical bit on a type we do not define.
        let mut o = GeneveOptions::EMPTY;
        o.push(SLUICE_OPT_CLASS, 0x80 | EXTERNAL, &[]).unwrap();
        assert_eq!(
            check_options(o.as_bytes()),
            Err(OptionError::UnknownCritical {
                class: SLUICE_OPT_CLASS,
                ty: 0x81
            })
        );
        assert_eq!(
            OptionError::UnknownCritical {
                class: 0x0129,
                ty: 0x85
            }
            .to_string(),
            "unknown critical Geneve option class 0x0129 type 0x85"
        );
    }

    #[test]
    fn malformed() {
        // An option claiming 8 bytes of data with 4 present.
        let b = [0x01, 0x29, 0x05, 0x02, 1, 2, 3, 4];
        assert_eq!(check_options(&b), Err(OptionError::Malformed));
        // A trailing partial option header.
        let mut b = external_option().as_bytes().to_vec();
        b.extend_from_slice(&[0x01, 0x29]);
        assert_eq!(check_options(&b), Err(OptionError::Malformed));
        // Our option with data it does not define.
        let mut o = GeneveOptions::EMPTY;
        o.push(SLUICE_OPT_CLASS, EXTERNAL, &[0; 4]).unwrap();
        assert_eq!(check_options(o.as_bytes()), Err(OptionError::Malformed));
        // Longer than a Geneve header can say.
        let big = [0u8; GENEVE_MAX_OPT_LEN + 4];
        assert_eq!(check_options(&big), Err(OptionError::Malformed));
        // 63 empty non-critical options: the most there can be.
        let full = [0u8; GENEVE_MAX_OPT_LEN];
        assert_eq!(check_options(&full), Ok(OptionSummary::default()));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut outcomes = [0u32; 3];
        for _ in 0..20_000 {
            let len = (next() % 300) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias towards plausible headers: small lengths, our class.
            if let Some(l) = b.get_mut(3) {
                *l &= 0x03;
            }
            if next() % 4 == 0 && b.len() >= 2 {
                b[0] = 0xff;
                b[1] = 0x59;
            }
            match check_options(&b) {
                Ok(_) => outcomes[0] += 1,
                Err(OptionError::Malformed) => outcomes[1] += 1,
                Err(OptionError::UnknownCritical { .. }) => outcomes[2] += 1,
            }
        }
        assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
    }
}
