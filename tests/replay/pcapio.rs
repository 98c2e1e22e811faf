//! Reading and writing classic pcap files (Ethernet, microsecond
//! timestamps, little-endian) with pcap-file 2.

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::path::Path;
use std::time::Duration;

/// One captured frame and when it was seen (since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ts: Duration,
    pub frame: Vec<u8>,
}

fn header() -> PcapHeader {
    PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: 65535,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
    }
}

/// The bytes of a pcap file holding `packets`, in order.
pub fn encode(packets: &[Packet]) -> Vec<u8> {
    let mut w = PcapWriter::with_header(Vec::new(), header()).expect("pcap header");
    for p in packets {
        assert_eq!(p.ts.subsec_nanos() % 1000, 0, "microsecond timestamps only");
        let len = u32::try_from(p.frame.len()).expect("frame length");
        w.write_packet(&PcapPacket::new(p.ts, len, &p.frame))
            .expect("pcap packet");
    }
    w.into_writer()
}

pub fn write(path: &Path, packets: &[Packet]) {
    std::fs::write(path, encode(packets))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The packets of an Ethernet pcap file, whole (not truncated by the
/// snap length), in file order.
pub fn read(path: &Path) -> Vec<Packet> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = PcapReader::new(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        r.header().datalink,
        DataLink::ETHERNET,
        "{}: Ethernet captures only",
        path.display()
    );
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            p.orig_len as usize,
            p.data.len(),
            "{}: packet {} truncated by the capture",
            path.display(),
            out.len() + 1
        );
        out.push(Packet {
            ts: p.timestamp,
            frame: p.data.into_owned(),
        });
    }
    out
}
