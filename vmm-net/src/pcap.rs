//! A backend on capture files: receives the frames of a pcap file (in
//! order, a burst at a time) and writes what it is sent to another, so any
//! endpoint of a switch can be played from and recorded to a capture
//! (what `sluiceadm replay` runs on, and a debugging uplink).

use crate::backend::Backend;
use dataplane::{Clock, PacketBuf};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::Path;
use std::time::Duration;

pub struct Pcap {
    input: Option<PcapReader<BufReader<File>>>,
    output: Option<PcapWriter<BufWriter<File>>>,
    /// Timestamps of written frames (the replay's clock, or the system's).
    clock: Box<dyn Clock>,
    /// Added to the clock's reading, so recordings carry wall-clock dates.
    epoch: Duration,
    /// Timestamp of the last frame received (for replays that drive a
    /// clock from the capture).
    last_rx: Option<Duration>,
}

fn pcap_err(e: pcap_file::PcapError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl Pcap {
    /// Reads frames from `input` (if any) and records what is sent to
    /// `output` (if any), stamped by `clock` plus `epoch`.
    pub fn open(
        input: Option<&Path>,
        output: Option<&Path>,
        clock: Box<dyn Clock>,
        epoch: Duration,
    ) -> io::Result<Pcap> {
        let input = match input {
            Some(p) => Some(PcapReader::new(BufReader::new(File::open(p)?)).map_err(pcap_err)?),
            None => None,
        };
        let output = match output {
            Some(p) => Some(PcapWriter::new(BufWriter::new(File::create(p)?)).map_err(pcap_err)?),
            None => None,
        };
        Ok(Pcap {
            input,
            output,
            clock,
            epoch,
            last_rx: None,
        })
    }

    /// The timestamp of the last frame received.
    pub fn last_rx(&self) -> Option<Duration> {
        self.last_rx
    }

    /// Whether every frame of the input has been received.
    pub fn exhausted(&self) -> bool {
        self.input.is_none()
    }
}

impl Backend for Pcap {
    fn rx_burst(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize> {
        let Some(r) = self.input.as_mut() else {
            return Ok(0);
        };
        let mut n = 0;
        while n < max {
            match r.next_packet() {
                Some(Ok(p)) => {
                    self.last_rx = Some(p.timestamp);
                    bufs.push(PacketBuf::from_frame(&p.data));
                    n += 1;
                }
                Some(Err(e)) => return Err(pcap_err(e)),
                None => {
                    self.input = None;
                    break;
                }
            }
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> io::Result<usize> {
        let n = pkts.len();
        if let Some(w) = self.output.as_mut() {
            let ts = self.epoch + Duration::from_nanos(self.clock.now());
            for p in pkts.iter() {
                let f = p.as_slice();
                w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                    .map_err(pcap_err)?;
            }
        }
        pkts.clear();
        Ok(n)
    }
}

impl Drop for Pcap {
    fn drop(&mut self) {
        // Flush what was recorded; a failure here has no one to report to,
        // and the next reader of the file will see it truncated.
        if let Some(w) = self.output.take() {
            let _ = w.into_writer().into_inner();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::ManualClock;

    #[test]
    fn frames_round_trip_through_capture_files() {
        let dir = std::env::temp_dir().join(format!("sluice-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.pcap"), dir.join("b.pcap"));
        let clock = ManualClock::new();
        clock.set(5_000_000_000);
        {
            let mut out = Pcap::open(
                None,
                Some(&a),
                Box::new(clock.clone()),
                Duration::from_secs(1_700_000_000),
            )
            .unwrap();
            let mut frames: Vec<PacketBuf> =
                (0..40u8).map(|i| PacketBuf::from_frame(&[i; 60])).collect();
            assert_eq!(out.tx_burst(&mut frames).unwrap(), 40);
        }
        let mut inp = Pcap::open(Some(&a), Some(&b), Box::new(clock), Duration::ZERO).unwrap();
        let mut got = Vec::new();
        assert_eq!(inp.rx_burst(&mut got, 32).unwrap(), 32);
        assert_eq!(inp.rx_burst(&mut got, 32).unwrap(), 8);
        assert_eq!(inp.rx_burst(&mut got, 32).unwrap(), 0);
        assert!(inp.exhausted());
        assert_eq!(got[39].as_slice(), &[39u8; 60]);
        assert_eq!(inp.last_rx(), Some(Duration::from_secs(1_700_000_005)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_file_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("sluice-pcap-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.pcap");
        std::fs::write(&f, b"not a capture").unwrap();
        assert!(Pcap::open(Some(&f), None, Box::new(ManualClock::new()), Duration::ZERO).is_err());
        assert!(Pcap::open(
            Some(&dir.join("missing.pcap")),
            None,
            Box::new(ManualClock::new()),
            Duration::ZERO
        )
        .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
