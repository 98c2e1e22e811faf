//! DPDK in sluiced (cargo feature `dpdk`): the process's EAL, started once
//! by the DPDK uplink, and guests on DPDK ports of that same EAL
//! ([`GuestSpec::Dpdk`](crate::types::GuestSpec::Dpdk)), which the
//! line-rate benchmark uses (bench/run.sh: a `net_pcap` capture replayed
//! as the guest, a `net_null` sink as the uplink, or the reverse).
//!
//! Without the feature, a DPDK guest is refused with a message saying so.

use vmm_net::backend::Backend;

#[cfg(feature = "dpdk")]
mod imp {
    use super::Backend;
    use std::sync::OnceLock;
    use vmm_net::dpdk::{DpdkPort, DpdkPortOptions, Eal};

    struct Started {
        eal: Eal,
        opts: DpdkPortOptions,
    }

    static EAL: OnceLock<Started> = OnceLock::new();

    /// Records the process's EAL (the uplink started it) and the options
    /// for guest ports (their mbuf pool).
    pub fn set_eal(eal: Eal, opts: DpdkPortOptions) {
        let _ = EAL.set(Started { eal, opts });
    }

    /// The process's EAL, once the uplink started it.
    pub fn eal() -> Option<&'static Eal> {
        EAL.get().map(|s| &s.eal)
    }

    pub fn open_guest(port: &str) -> Result<Box<dyn Backend>, String> {
        let s = EAL.get().ok_or_else(|| {
            format!("DPDK guest '{port}': needs the DPDK uplink (its EAL), and this host has none")
        })?;
        let opts = DpdkPortOptions {
            rx_queues: 1,
            tx_queues: 1,
            ..s.opts.clone()
        };
        let mut p =
            DpdkPort::open(&s.eal, port, opts).map_err(|e| format!("DPDK guest '{port}': {e}"))?;
        let q = p
            .take_queues()
            .pop()
            .ok_or_else(|| format!("DPDK guest '{port}': no queue"))?;
        // The queue keeps the device open; the port handle only reads
        // counters. DPDK cannot reopen a closed port, so the guest lives
        // as long as its queue (the port's removal closes it for good).
        drop(p);
        Ok(Box::new(q))
    }
}

#[cfg(feature = "dpdk")]
pub use imp::{eal, set_eal};

/// Opens the DPDK port `port` (a name such as `net_pcap0`, or a number)
/// as a guest device, on the EAL the uplink started.
pub fn open_guest(port: &str) -> Result<Box<dyn Backend>, String> {
    #[cfg(feature = "dpdk")]
    {
        imp::open_guest(port)
    }
    #[cfg(not(feature = "dpdk"))]
    {
        Err(format!(
            "DPDK guest '{port}': this sluiced was built without DPDK (build it with --features dpdk)"
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_dpdk_guest_without_a_dpdk_uplink_is_refused_with_the_reason() {
        let e = match super::open_guest("net_pcap0") {
            Ok(_) => panic!("a DPDK guest opened without an EAL"),
            Err(e) => e,
        };
        assert!(e.contains("net_pcap0"), "{e}");
        if cfg!(feature = "dpdk") {
            assert!(e.contains("needs the DPDK uplink"), "{e}");
        } else {
            assert!(e.contains("--features dpdk"), "{e}");
        }
    }
}
