//! A vhost-user device that sends every frame its guest transmits back
//! to the guest, and prints how many it moved each second: the sluice
//! side of bench/scripts/vhost-pps.sh (a DPDK virtio-user "guest" drives
//! it). No port and no policy: this measures the vhost-user backend
//! alone.
//!
//!   cargo run --release -p vmm-net --example vhost-echo -- SOCKET SECONDS

use std::time::{Duration, Instant};
use vmm_net::backend::Backend;
use vmm_net::vhost_user::{VhostUser, VhostUserOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(secs)) = (args.next(), args.next()) else {
        eprintln!("usage: vhost-echo SOCKET SECONDS");
        std::process::exit(2);
    };
    let Ok(secs) = secs.parse::<u64>() else {
        eprintln!("SECONDS must be a whole number, not '{secs}'");
        std::process::exit(2);
    };
    let mut dev = match VhostUser::listen(path.as_ref(), &VhostUserOptions::default()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vhost-echo: {e}");
            std::process::exit(1);
        }
    };
    let end = Instant::now() + Duration::from_secs(secs);
    let mut bufs = Vec::with_capacity(256);
    let mut tick = Instant::now();
    let mut last = dev.stats();
    while Instant::now() < end {
        // Counted by the device: rx_frames, tx_frames, tx_no_buffers.
        let _ = dev.rx_burst(&mut bufs, 256);
        if !bufs.is_empty() {
            let _ = dev.tx_burst(&mut bufs);
        }
        if tick.elapsed() >= Duration::from_secs(1) {
            let s = dev.stats();
            let dt = tick.elapsed().as_secs_f64();
            println!(
                "rx-pps {:.0} tx-pps {:.0} no-buffer-pps {:.0} (connections {}, running {}, refused messages {}, {:?})",
                (s.rx_frames - last.rx_frames) as f64 / dt,
                (s.tx_frames - last.tx_frames) as f64 / dt,
                (s.tx_no_buffers - last.tx_no_buffers) as f64 / dt,
                dev.connections(),
                dev.is_running(),
                dev.refused_messages(),
                s
            );
            last = s;
            tick = Instant::now();
        }
    }
}
