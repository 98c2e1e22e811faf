//! Geneve (RFC 8926) and its options.

use core::iter::FusedIterator;

use ingot::ethernet::Ethertype;
use ingot::geneve::{GeneveFlags, GeneveOptRef, GeneveRef, ValidGeneve, ValidGeneveOpt};
use ingot::types::{HeaderLen, HeaderParse};

use super::{GeneveInfo, ParseError, Parsed, Vni};

/// The IANA UDP port of Geneve.
pub const GENEVE_PORT: u16 = 6081;
/// The only Geneve version.
pub const GENEVE_VERSION: u8 = 0;
/// Length of the fixed Geneve header.
pub const GENEVE_HDR_LEN: usize = 8;
/// Offset of the version (2 bits) and options length (6 bits, in 4-byte words).
pub const GENEVE_VER_OPT_LEN: usize = 0;
/// Offset of the flags byte (O, C).
pub const GENEVE_FLAGS: usize = 1;
/// Offset of the protocol type.
pub const GENEVE_PROTO: usize = 2;
/// Offset of the 24-bit VNI.
pub const GENEVE_VNI: usize = 4;
/// The O (control packet) bit in the flags byte.
pub const GENEVE_FLAG_OAM: u8 = 0x80;
/// The C (critical options present) bit in the flags byte.
pub const GENEVE_FLAG_CRITICAL: u8 = 0x40;
/// Longest options area (63 words).
pub const GENEVE_MAX_OPT_LEN: usize = 63 * 4;
/// Length of an option's own header (class, type, length).
pub const GENEVE_OPT_HDR_LEN: usize = 4;
/// The critical bit of an option's type.
pub const GENEVE_OPT_CRITICAL: u8 = 0x80;

/// Parses a Geneve header and its options at the start of `b` (the UDP
/// payload). Returns the summary and the header length, options included.
///
/// Checks: 8 bytes (`TruncatedGeneve`), version 0, the options area within
/// `b` (`TruncatedGeneve`), every option within the options area
/// (`BadGeneveOption`), and protocol type 0x6558 (Ethernet).
#[inline(always)]
pub(crate) fn parse_geneve(b: &[u8]) -> Result<(GeneveInfo, usize), ParseError> {
    let Ok((g, _, _)) = ValidGeneve::parse(b) else {
        return Err(classify_error(b));
    };
    if g.version() != GENEVE_VERSION {
        return Err(ParseError::BadGeneveVersion);
    }
    if g.protocol_type() != Ethertype::ETHERNET {
        return Err(ParseError::BadGeneveProtocol);
    }
    let flags = g.flags();
    let opt_len = u16::from(g.opt_len()) * 4;
    let info = GeneveInfo {
        vni: Vni::from_bytes(g.vni().bytes()),
        oam: flags.contains(GeneveFlags::CONTROL_PACKET),
        critical: flags.contains(GeneveFlags::CRITICAL_OPTS),
        opt_len,
    };
    Ok((info, g.packet_length()))
}

/// Why ingot refused `b`: it reports every shortfall as `TooSmall`, so look
/// at the header to tell a cut packet from a bad option.
#[cold]
fn classify_error(b: &[u8]) -> ParseError {
    match b.get(GENEVE_VER_OPT_LEN) {
        Some(&v) if b.len() >= GENEVE_HDR_LEN => {
            if v >> 6 != GENEVE_VERSION {
                ParseError::BadGeneveVersion
            } else if GENEVE_HDR_LEN + usize::from(v & 0x3f) * 4 > b.len() {
                ParseError::TruncatedGeneve
            } else {
                ParseError::BadGeneveOption
            }
        }
        _ => ParseError::TruncatedGeneve,
    }
}

/// One Geneve option, borrowed from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneveOptView<'a> {
    pub class: u16,
    /// The option type, critical bit included.
    pub ty: u8,
    /// The option data (a multiple of 4 bytes, at most 124).
    pub data: &'a [u8],
}

impl GeneveOptView<'_> {
    /// The critical bit: a receiver that does not know `(class, ty)` must
    /// drop the packet.
    #[inline]
    pub fn critical(&self) -> bool {
        self.ty & GENEVE_OPT_CRITICAL != 0
    }
}

/// An iterator over the options in a Geneve options area. It yields
/// `Err(BadGeneveOption)` once, then stops, if an option overruns the area.
#[derive(Clone, Debug)]
pub struct GeneveOpts<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for GeneveOpts<'a> {
    type Item = Result<GeneveOptView<'a>, ParseError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        match ValidGeneveOpt::parse(rest) {
            Ok((o, _, after)) => {
                self.rest = after;
                let len = rest.len() - after.len();
                let data = rest.get(GENEVE_OPT_HDR_LEN..len).unwrap_or_default();
                Some(Ok(GeneveOptView {
                    class: o.class(),
                    ty: o.option_type().0,
                    data,
                }))
            }
            Err(_) => {
                self.rest = &[];
                Some(Err(ParseError::BadGeneveOption))
            }
        }
    }
}

impl FusedIterator for GeneveOpts<'_> {}

/// Iterates over the options in `opts`, a Geneve options area (the
/// `opt_len` bytes after the fixed header). Bounded by `opts`; never panics.
#[inline]
pub fn options(opts: &[u8]) -> GeneveOpts<'_> {
    GeneveOpts { rest: opts }
}

impl Parsed {
    /// The Geneve options of a frame parsed with `ParseMode::Geneve` (no
    /// options for any other frame). `frame` must be the parsed frame.
    #[inline]
    pub fn geneve_options<'a>(&self, frame: &'a [u8]) -> GeneveOpts<'a> {
        let area = match &self.hdrs.outer {
            Some(o) => {
                let start = usize::from(self.off.geneve) + GENEVE_HDR_LEN;
                frame
                    .get(start..start + usize::from(o.geneve.opt_len))
                    .unwrap_or_default()
            }
            None => &[],
        };
        options(area)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const WITH_OPTS: [u8; 28] = [
        0x04, 0x40, 0x65, 0x58, 0x12, 0x34, 0x56, 0x00, // 4 words of options, C set
        0x01, 0x29, 0x80, 0x01, 0xaa, 0xbb, 0xcc, 0xdd,   // critical, 4 bytes data
        0xff, 0xff, 0x05, 0x00,                           // not critical, no data
        0x00, 0x01, 0x7f, 0x00,                           // not critical, no data
        0xde, 0xad, 0xbe, 0xef,                           // payload
    ];

    #[test]
    fn header_fields() {
        let (info, len) = parse_geneve(&WITH_OPTS).unwrap();
        assert_eq!(len, 24);
        assert_eq!(
            info,
            GeneveInfo {
                vni: Vni::new(0x123456).unwrap(),
                oam: false,
                critical: true,
                opt_len: 16
            }
        );
        assert_eq!(WITH_OPTS[GENEVE_VNI..GENEVE_VNI + 3], [0x12, 0x34, 0x56]);
        assert_eq!(WITH_OPTS[GENEVE_FLAGS], GENEVE_FLAG_CRITICAL);
        assert_eq!(WITH_OPTS[GENEVE_PROTO..GENEVE_PROTO + 2], [0x65, 0x58]);
        assert_eq!(WITH_OPTS[GENEVE_VER_OPT_LEN] & 0x3f, 4);
        let mut oam = WITH_OPTS;
        oam[GENEVE_FLAGS] = GENEVE_FLAG_OAM;
        let (info, _) = parse_geneve(&oam).unwrap();
        assert!(info.oam && !info.critical);
    }

    #[test]
    fn option_iteration() {
        let opts: Vec<_> = options(&WITH_OPTS[8..24]).collect();
        assert_eq!(
            opts,
            vec![
                Ok(GeneveOptView {
                    class: 0x0129,
                    ty: 0x80,
                    data: &[0xaa, 0xbb, 0xcc, 0xdd]
                }),
                Ok(GeneveOptView {
                    class: 0xffff,
                    ty: 0x05,
                    data: &[]
                }),
                Ok(GeneveOptView {
                    class: 0x0001,
                    ty: 0x7f,
                    data: &[]
                }),
            ]
        );
        assert!(opts[0].as_ref().unwrap().critical());
        assert!(!opts[1].as_ref().unwrap().critical());
        assert_eq!(options(&[]).count(), 0);
        // Overruns: the error comes once, then the iterator is done.
        let mut it = options(&WITH_OPTS[8..14]);
        assert_eq!(it.next(), Some(Err(ParseError::BadGeneveOption)));
        assert_eq!(it.next(), None);
        let mut it = options(&WITH_OPTS[8..18]);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next(), Some(Err(ParseError::BadGeneveOption)));
        assert_eq!(it.next(), None);
        let mut it = options(&WITH_OPTS[16..22]);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next(), Some(Err(ParseError::BadGeneveOption)));
    }

    #[test]
    fn errors() {
        for n in 0..8 {
            assert_eq!(
                parse_geneve(&WITH_OPTS[..n]),
                Err(ParseError::TruncatedGeneve)
            );
        }
        for n in 8..24 {
            assert_eq!(
                parse_geneve(&WITH_OPTS[..n]),
                Err(ParseError::TruncatedGeneve),
                "n={n}"
            );
        }
        for v in 1..4u8 {
            let mut g = WITH_OPTS;
            g[0] |= v << 6;
            assert_eq!(parse_geneve(&g), Err(ParseError::BadGeneveVersion));
            assert_eq!(parse_geneve(&g[..12]), Err(ParseError::BadGeneveVersion));
        }
        let mut g = WITH_OPTS;
        g[GENEVE_PROTO..GENEVE_PROTO + 2].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse_geneve(&g), Err(ParseError::BadGeneveProtocol));
        // First option claims 16 bytes of data: past the 16-byte area.
        let mut g = WITH_OPTS;
        g[11] = 0x04;
        assert_eq!(parse_geneve(&g), Err(ParseError::BadGeneveOption));
    }
}
