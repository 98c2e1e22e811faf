//! An IPFIX exporter's encoder (RFC 7011): flow records as IPFIX
//! messages small enough for one UDP datagram.
//!
//! Every message starts with the 16-byte header (version 10, length,
//! export time, sequence number, observation domain). Over UDP a
//! collector may lose or restart, so the templates are sent again
//! periodically (RFC 7011 §8.4): in the first message of an export at
//! least [`Encoder::template_every`] seconds after the last templates
//! sent. A message never exceeds [`MAX_MESSAGE`] bytes, so it fits an
//! ordinary 1500-byte path without IP fragmentation.
//!
//! Two templates, one per address family, with the same layout apart from
//! the addresses:
//!
//! | template 256 (IPv4) / 257 (IPv6)   | IE (PEN)        | bytes  |
//! |------------------------------------|-----------------|--------|
//! | sourceIPv4Address / sourceIPv6Address | 8 / 27       | 4 / 16 |
//! | destinationIPv4Address / destinationIPv6Address | 12 / 28 | 4 / 16 |
//! | sourceTransportPort                | 7               | 2      |
//! | destinationTransportPort           | 11              | 2      |
//! | protocolIdentifier                 | 4               | 1      |
//! | flowDirection (0 in, 1 out)        | 61              | 1      |
//! | octetDeltaCount                    | 1               | 8      |
//! | packetDeltaCount                   | 2               | 8      |
//! | reverseOctetDeltaCount             | 1 (29305)       | 8      |
//! | reversePacketDeltaCount            | 2 (29305)       | 8      |
//! | flowStartMilliseconds              | 152             | 8      |
//! | flowEndMilliseconds                | 153             | 8      |
//! | flowEndReason                      | 136             | 1      |
//! | firewallEvent                      | 233             | 1      |
//! | postNATSourceIPv4Address / postNATSourceIPv6Address | 225 / 281 | 4 / 16 |
//! | postNATDestinationIPv4Address / postNATDestinationIPv6Address | 226 / 282 | 4 / 16 |
//! | postNAPTSourceTransportPort        | 227             | 2      |
//! | postNAPTDestinationTransportPort   | 228             | 2      |
//! | sluice VNI                         | 1 (32473)       | 4      |
//! | sluice layer name (string, NUL-padded) | 2 (32473)   | 16     |
//! | sluice rule id (0: the default action) | 3 (32473)   | 8      |
//! | sluice close reason ([`CloseReason::code`]) | 4 (32473) | 1   |
//!
//! The source and destination are the flow's first packet as it entered
//! the port; the plain counts are that direction's, the reverse counts
//! (RFC 5103 biflow elements, PEN 29305) the other's. The post-NAT
//! elements are zero when NAT did not change the flow. Sluice's own
//! elements use PEN 32473 (the documentation PEN of RFC 5612).

use dataplane::{CloseReason, Direction, FlowRecord};
use std::net::IpAddr;

pub const VERSION: u16 = 10;
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
/// RFC 5612's private enterprise number for documentation.
pub const PEN_SLUICE: u32 = 32473;
/// RFC 5103's PEN for reverse information elements.
pub const PEN_REVERSE: u32 = 29305;
/// The largest message: an ordinary 1500-byte MTU less IPv6 and UDP
/// headers, with room to spare for tunnels on the way.
pub const MAX_MESSAGE: usize = 1400;
const HEADER_LEN: usize = 16;
const SET_HEADER_LEN: usize = 4;

/// One field of a template: information element, length, and the PEN of
/// an enterprise-specific element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub ie: u16,
    pub len: u16,
    pub pen: Option<u32>,
}

const fn ie(ie: u16, len: u16) -> Field {
    Field { ie, len, pen: None }
}

const fn pen(pen: u32, ie: u16, len: u16) -> Field {
    Field {
        ie,
        len,
        pen: Some(pen),
    }
}

/// The fields of a template, `a` the address length (4 or 16).
fn fields(v6: bool) -> [Field; 22] {
    let (a, src, dst, nsrc, ndst) = if v6 {
        (16, 27, 28, 281, 282)
    } else {
        (4, 8, 12, 225, 226)
    };
    [
        ie(src, a),
        ie(dst, a),
        ie(7, 2),
        ie(11, 2),
        ie(4, 1),
        ie(61, 1),
        ie(1, 8),
        ie(2, 8),
        pen(PEN_REVERSE, 1, 8),
        pen(PEN_REVERSE, 2, 8),
        ie(152, 8),
        ie(153, 8),
        ie(136, 1),
        ie(233, 1),
        ie(nsrc, a),
        ie(ndst, a),
        ie(227, 2),
        ie(228, 2),
        pen(PEN_SLUICE, 1, 4),
        pen(PEN_SLUICE, 2, 16),
        pen(PEN_SLUICE, 3, 8),
        pen(PEN_SLUICE, 4, 1),
    ]
}

/// The fields of template `id` (256 or 257).
pub fn template(id: u16) -> Option<[Field; 22]> {
    match id {
        TEMPLATE_V4 => Some(fields(false)),
        TEMPLATE_V6 => Some(fields(true)),
        _ => None,
    }
}

fn record_len(v6: bool) -> usize {
    fields(v6).iter().map(|f| usize::from(f.len)).sum()
}

/// RFC 7011's flowEndReason (IANA): 1 idle timeout, 2 active timeout,
/// 3 end of flow detected, 4 forced end, 5 lack of resources. A denied
/// packet never made a flow: "forced end".
pub fn flow_end_reason(r: CloseReason) -> u8 {
    match r {
        CloseReason::Idle => 1,
        CloseReason::Active => 2,
        CloseReason::Fin | CloseReason::Rst => 3,
        CloseReason::Cleared | CloseReason::Revoked | CloseReason::Denied => 4,
        CloseReason::Evicted => 5,
    }
}

/// firewallEvent (IANA): 2 flow deleted, 3 flow denied, 5 flow update.
pub fn firewall_event(r: CloseReason) -> u8 {
    match r {
        CloseReason::Denied => 3,
        CloseReason::Active => 5,
        _ => 2,
    }
}

/// A flow record with its moments as wall-clock milliseconds since the
/// Unix epoch (what flowStartMilliseconds carries).
#[derive(Clone, Copy, Debug)]
pub struct Exported {
    pub rec: FlowRecord,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// Encodes records into messages, keeping the sequence number and when
/// templates were last sent.
#[derive(Debug)]
pub struct Encoder {
    pub domain: u32,
    /// Data records sent so far (RFC 7011 §3.1: the next message's
    /// sequence number).
    pub sequence: u32,
    /// Seconds between template resends.
    pub template_every: u32,
    templates_sent: Option<u32>,
}

impl Encoder {
    pub fn new(domain: u32) -> Encoder {
        Encoder {
            domain,
            sequence: 0,
            template_every: 10,
            templates_sent: None,
        }
    }

    /// Encodes `recs` into as many messages as they need, each at most
    /// [`MAX_MESSAGE`] bytes, with `export_secs` (Unix seconds) as their
    /// export time. Templates come first when due.
    pub fn encode(&mut self, recs: &[Exported], export_secs: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let due = self
            .templates_sent
            .is_none_or(|t| export_secs.saturating_sub(t) >= self.template_every);
        let mut msg = Message::new();
        if due {
            msg.templates();
            self.templates_sent = Some(export_secs);
        }
        for r in recs {
            let v6 = r.rec.key.src_ip().is_ipv6();
            let tid = if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
            let need = record_len(v6)
                + if msg.set == Some(tid) {
                    0
                } else {
                    SET_HEADER_LEN
                };
            if msg.buf.len() + need > MAX_MESSAGE {
                out.push(msg.finish(self, export_secs));
                msg = Message::new();
            }
            msg.record(tid, r);
        }
        if msg.records > 0 || due {
            out.push(msg.finish(self, export_secs));
        }
        out
    }
}

/// A message being built.
struct Message {
    buf: Vec<u8>,
    /// The open set's id and where its header is.
    set: Option<u16>,
    set_at: usize,
    records: u32,
}

impl Message {
    fn new() -> Message {
        let mut buf = Vec::with_capacity(MAX_MESSAGE);
        buf.resize(HEADER_LEN, 0);
        Message {
            buf,
            set: None,
            set_at: 0,
            records: 0,
        }
    }

    fn open_set(&mut self, id: u16) {
        self.close_set();
        self.set = Some(id);
        self.set_at = self.buf.len();
        self.buf.extend_from_slice(&id.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
    }

    fn close_set(&mut self) {
        if self.set.take().is_some() {
            let len = (self.buf.len() - self.set_at) as u16;
            self.buf[self.set_at + 2..self.set_at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// A template set (set id 2) with both templates.
    fn templates(&mut self) {
        self.open_set(2);
        for id in [TEMPLATE_V4, TEMPLATE_V6] {
            let fs = template(id).unwrap_or_else(|| fields(false));
            self.buf.extend_from_slice(&id.to_be_bytes());
            self.buf.extend_from_slice(&(fs.len() as u16).to_be_bytes());
            for f in fs {
                let enterprise = if f.pen.is_some() { 0x8000 } else { 0 };
                self.buf
                    .extend_from_slice(&(f.ie | enterprise).to_be_bytes());
                self.buf.extend_from_slice(&f.len.to_be_bytes());
                if let Some(p) = f.pen {
                    self.buf.extend_from_slice(&p.to_be_bytes());
                }
            }
        }
        self.close_set();
    }

    fn record(&mut self, tid: u16, e: &Exported) {
        if self.set != Some(tid) {
            self.open_set(tid);
        }
        let r = &e.rec;
        let b = &mut self.buf;
        let addr = |b: &mut Vec<u8>, a: IpAddr| match a {
            IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
        };
        let v6 = tid == TEMPLATE_V6;
        let unspecified =
            |b: &mut Vec<u8>| b.extend_from_slice(if v6 { &[0; 16] } else { &[0; 4] });
        addr(b, r.key.src_ip());
        addr(b, r.key.dst_ip());
        b.extend_from_slice(&r.key.src_port.to_be_bytes());
        b.extend_from_slice(&r.key.dst_port.to_be_bytes());
        b.push(r.key.proto);
        b.push(match r.origin {
            Direction::In => 0,
            Direction::Out => 1,
        });
        let (fp, fb) = r.forward();
        let (rp, rb) = r.reverse();
        for v in [fb, fp, rb, rp, e.start_ms, e.end_ms] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.push(flow_end_reason(r.reason));
        b.push(firewall_event(r.reason));
        match &r.translated {
            Some(t) => {
                addr(b, t.src_ip());
                addr(b, t.dst_ip());
                b.extend_from_slice(&t.src_port.to_be_bytes());
                b.extend_from_slice(&t.dst_port.to_be_bytes());
            }
            None => {
                unspecified(b);
                unspecified(b);
                b.extend_from_slice(&[0; 4]);
            }
        }
        b.extend_from_slice(&r.vni.to_be_bytes());
        b.extend_from_slice(r.decider.layer.bytes());
        b.extend_from_slice(&r.decider.rule.map_or(0, |id| id.0).to_be_bytes());
        b.push(r.reason.code());
        self.records += 1;
    }

    fn finish(mut self, enc: &mut Encoder, export_secs: u32) -> Vec<u8> {
        self.close_set();
        let len = self.buf.len() as u16;
        let b = &mut self.buf;
        b[0..2].copy_from_slice(&VERSION.to_be_bytes());
        b[2..4].copy_from_slice(&len.to_be_bytes());
        b[4..8].copy_from_slice(&export_secs.to_be_bytes());
        b[8..12].copy_from_slice(&enc.sequence.to_be_bytes());
        b[12..16].copy_from_slice(&enc.domain.to_be_bytes());
        enc.sequence = enc.sequence.wrapping_add(self.records);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    //! A decoder written from RFC 7011 §3 alone, independent of the
    //! encoder's tables: it learns templates from the template sets it
    //! reads and decodes data sets by them.

    use super::*;
    use dataplane::{Decider, Decision, FlowKey, LayerName, RuleId};
    use std::collections::HashMap;

    type Templates = HashMap<u16, Vec<(u16, u16, Option<u32>)>>;
    /// A decoded data record: (PEN, IE) → value bytes.
    type Rec = HashMap<(u32, u16), Vec<u8>>;

    struct Decoded {
        export: u32,
        sequence: u32,
        domain: u32,
        records: Vec<(u16, Rec)>,
    }

    fn be16(b: &[u8], i: usize) -> u16 {
        u16::from_be_bytes([b[i], b[i + 1]])
    }

    fn be32(b: &[u8], i: usize) -> u32 {
        u32::from_be_bytes(b[i..i + 4].try_into().unwrap())
    }

    fn decode(msg: &[u8], t: &mut Templates) -> Decoded {
        assert_eq!(be16(msg, 0), 10, "version");
        assert_eq!(usize::from(be16(msg, 2)), msg.len(), "length");
        let mut d = Decoded {
            export: be32(msg, 4),
            sequence: be32(msg, 8),
            domain: be32(msg, 12),
            records: Vec::new(),
        };
        let mut i = 16;
        while i < msg.len() {
            let id = be16(msg, i);
            let len = usize::from(be16(msg, i + 2));
            assert!(len >= 4 && i + len <= msg.len(), "set length");
            let body = &msg[i + 4..i + len];
            if id == 2 {
                let mut j = 0;
                while j + 4 <= body.len() {
                    let tid = be16(body, j);
                    let n = be16(body, j + 2);
                    j += 4;
                    let mut fs = Vec::new();
                    for _ in 0..n {
                        let raw = be16(body, j);
                        let flen = be16(body, j + 2);
                        j += 4;
                        let pen = (raw & 0x8000 != 0).then(|| {
                            j += 4;
                            be32(body, j - 4)
                        });
                        fs.push((raw & 0x7fff, flen, pen));
                    }
                    t.insert(tid, fs);
                }
            } else if id >= 256 {
                let fs = t.get(&id).expect("data set after its template");
                let rlen: usize = fs.iter().map(|f| usize::from(f.1)).sum();
                let mut j = 0;
                while j + rlen <= body.len() {
                    let mut r = Rec::new();
                    for &(ie, flen, pen) in fs {
                        let flen = usize::from(flen);
                        r.insert((pen.unwrap_or(0), ie), body[j..j + flen].to_vec());
                        j += flen;
                    }
                    d.records.push((id, r));
                }
                assert_eq!(j, body.len(), "no padding is written");
            }
            i += len;
        }
        d
    }

    fn num(r: &Rec, pen: u32, ie: u16) -> u64 {
        r[&(pen, ie)]
            .iter()
            .fold(0u64, |a, &b| (a << 8) | u64::from(b))
    }

    fn rec(src: &str, dst: &str, reason: CloseReason) -> Exported {
        let key = FlowKey::new(src.parse().unwrap(), dst.parse().unwrap(), 6, 40000, 443);
        Exported {
            rec: FlowRecord {
                key,
                origin: Direction::Out,
                vni: 7777,
                start: 0,
                end: 0,
                packets: [3, 4],
                bytes: [300, 400],
                decision: Decision::Allow,
                decider: Decider {
                    layer: LayerName::new("firewall"),
                    rule: Some(RuleId(12)),
                },
                translated: None,
                tcp: None,
                reason,
            },
            start_ms: 1_700_000_000_123,
            end_ms: 1_700_000_004_567,
        }
    }

    #[test]
    fn ipv4_record_round_trips() {
        let mut e = Encoder::new(42);
        let mut r = rec("10.0.0.5", "198.51.100.1", CloseReason::Fin);
        r.rec.translated = Some(FlowKey::new(
            "203.0.113.10".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            6,
            1024,
            443,
        ));
        let msgs = e.encode(&[r], 1_700_000_005);
        assert_eq!(msgs.len(), 1);
        let mut t = Templates::new();
        let d = decode(&msgs[0], &mut t);
        assert_eq!((d.export, d.sequence, d.domain), (1_700_000_005, 0, 42));
        assert_eq!(t.len(), 2, "both templates");
        assert_eq!(d.records.len(), 1);
        let (tid, r) = &d.records[0];
        assert_eq!(*tid, 256);
        assert_eq!(r[&(0, 8)], [10, 0, 0, 5]);
        assert_eq!(r[&(0, 12)], [198, 51, 100, 1]);
        assert_eq!(num(r, 0, 7), 40000);
        assert_eq!(num(r, 0, 11), 443);
        assert_eq!(num(r, 0, 4), 6);
        assert_eq!(num(r, 0, 61), 1, "egress: guest to network");
        // Forward is the origin's direction (Out), reverse the other.
        assert_eq!((num(r, 0, 1), num(r, 0, 2)), (400, 4));
        assert_eq!((num(r, PEN_REVERSE, 1), num(r, PEN_REVERSE, 2)), (300, 3));
        assert_eq!(num(r, 0, 152), 1_700_000_000_123);
        assert_eq!(num(r, 0, 153), 1_700_000_004_567);
        assert_eq!(num(r, 0, 136), 3, "end of flow detected");
        assert_eq!(num(r, 0, 233), 2, "flow deleted");
        assert_eq!(r[&(0, 225)], [203, 0, 113, 10]);
        assert_eq!(num(r, 0, 227), 1024);
        assert_eq!(num(r, PEN_SLUICE, 1), 7777);
        assert_eq!(&r[&(PEN_SLUICE, 2)][..8], b"firewall");
        assert_eq!(num(r, PEN_SLUICE, 3), 12);
        assert_eq!(num(r, PEN_SLUICE, 4), u64::from(CloseReason::Fin.code()));
    }

    #[test]
    fn ipv6_records_use_their_template() {
        let mut e = Encoder::new(1);
        let msgs = e.encode(
            &[
                rec("fd00::5", "2001:db8::1", CloseReason::Denied),
                rec("10.0.0.5", "10.0.0.9", CloseReason::Idle),
            ],
            100,
        );
        let mut t = Templates::new();
        let d = decode(&msgs[0], &mut t);
        assert_eq!(d.records.len(), 2);
        let (tid, r) = &d.records[0];
        assert_eq!(*tid, 257);
        assert_eq!(
            r[&(0, 27)],
            "fd00::5".parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(r[&(0, 281)], [0; 16], "no NAT");
        assert_eq!(num(r, 0, 233), 3, "flow denied");
        assert_eq!(num(r, 0, 136), 4);
        assert_eq!(d.records[1].0, 256);
        assert_eq!(num(&d.records[1].1, 0, 136), 1, "idle timeout");
    }

    /// Many records: several messages, none over the limit, sequence
    /// numbers counting data records (RFC 7011 §3.1), templates only in
    /// the first message and again once `template_every` has passed.
    #[test]
    fn messages_stay_small_and_count_records() {
        let mut e = Encoder::new(9);
        let recs: Vec<_> = (0..100)
            .map(|i| match i % 3 {
                0 => rec("fd00::5", "fd00::9", CloseReason::Idle),
                _ => rec("10.0.0.5", "10.0.0.9", CloseReason::Idle),
            })
            .collect();
        let msgs = e.encode(&recs, 1000);
        assert!(msgs.len() > 5);
        let mut t = Templates::new();
        let mut seq = 0;
        let mut n = 0;
        for (i, m) in msgs.iter().enumerate() {
            assert!(m.len() <= MAX_MESSAGE, "message {i} is {} bytes", m.len());
            let before = t.len();
            let d = decode(m, &mut t);
            if i > 0 {
                assert_eq!(before, t.len());
            }
            assert_eq!(d.sequence, seq);
            seq += d.records.len() as u32;
            n += d.records.len();
        }
        assert_eq!(n, 100);
        assert_eq!(e.sequence, 100);

        let has_templates = |m: &[u8]| be16(m, 16) == 2;
        let m = e.encode(&recs[..1], 1005);
        assert!(!has_templates(&m[0]), "not due yet");
        let m = e.encode(&recs[..1], 1010);
        assert!(
            has_templates(&m[0]),
            "resent after template_every (RFC 7011 §8.4)"
        );
        assert!(e.encode(&[], 1011).is_empty(), "nothing to send");
    }
}
