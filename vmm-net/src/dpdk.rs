//! The DPDK uplink (cargo feature `dpdk`): kernel bypass on a real NIC, or
//! on DPDK's virtual devices (`net_null`, `net_ring`, `net_pcap`, ...) for
//! tests, with the same code: the EAL arguments choose.
//!
//! - [`Eal::init`] starts DPDK's environment, once per process, with the
//!   arguments it is given (e.g. `-l 0 --no-huge --no-pci --no-shconf
//!   -m 256 --vdev net_null0`, or `-a 0000:01:00.0` for a NIC).
//! - [`DpdkPort::open`] configures and starts one port with
//!   [`DpdkPortOptions`], and hands out one [`DpdkQueue`] per queue
//!   ([`DpdkPort::take_queues`]); a queue is a [`Backend`], to be owned
//!   and polled by one worker thread.
//! - Counters: [`DpdkQueue::counters`] per queue, [`DpdkPort::counters`]
//!   for the port (every queue's, plus the device's `rte_eth_stats`).
//!
//! # Zero copy
//!
//! A received frame that sits in one mbuf is not copied: the queue lends
//! the mbuf's buffer to the engine as a [`PacketBuf`] (see
//! [`dataplane::packet::Lent`]), whose frame starts at the mbuf's data
//! offset, so DPDK's 128-byte headroom takes the 70-byte Geneve push in
//! place. A DPDK queue's [`Backend::tx_burst`] sends a lent frame as the
//! same mbuf (its data offset and lengths set from the `PacketBuf`); a
//! lent buffer that goes anywhere else (a TAP, a drop) gives its mbuf
//! back to the pool when it is dropped. What cannot be lent is copied, as
//! are frames from other backends on the way out: a chained (jumbo)
//! frame, a shared or indirect mbuf, or every frame when
//! [`DpdkPortOptions::zero_copy`] is off. No heap allocation happens per
//! packet either way: mbufs for copies are allocated and freed in bulk,
//! and the copied frames' `PacketBuf`s are kept in the queue's free list
//! and reused; a queue that sends more than it receives passes the
//! surplus to the process's [`SharedPool`](crate::backend::SharedPool),
//! where one that receives more than it sends takes them (it allocates
//! only while warming up).
//!
//! A lent frame holds its mbuf until it leaves: frames queued inside
//! sluice (towards a slow guest, handed to another worker) count against
//! the pool, and a pool that runs dry shows as `rx_nombuf`.
//!
//! # What DPDK imposes
//!
//! - The EAL can be initialised once per process; after the last [`Eal`]
//!   handle (ports hold one) is dropped it is cleaned up and cannot start
//!   again. Tests therefore share one EAL.
//! - `rte_eal_init` pins the calling thread to the main lcore's CPU.
//! - Dropping the last handle to a port (the [`DpdkPort`] and all its
//!   queues) stops and *closes* it: DPDK frees a closed port, so it cannot
//!   be opened again in this process (a `net_pcap` port writes out its
//!   `tx_pcap` file then).
//! - A queue may be polled from any thread; [`Eal::register_thread`] on a
//!   worker thread gives it an lcore id, so the mbuf pool's per-lcore
//!   cache is used instead of its shared ring.
//!
//! The unsafe code (every call into DPDK) is in the `sys` submodule.

mod sys;

use crate::backend::Backend;
use dataplane::packet::{DEFAULT_CAPACITY, DEFAULT_HEADROOM};
use dataplane::PacketBuf;
use std::ffi::CString;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Errors of the DPDK uplink; each names what failed and DPDK's reason.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("EAL argument {0:?} contains a NUL byte")]
    BadArgument(String),
    #[error("the DPDK EAL was already initialised in this process (DPDK can start it only once)")]
    EalAlreadyInitialised,
    #[error("rte_eal_init failed: {0}")]
    EalInit(String),
    #[error("rte_thread_register failed: {0}")]
    ThreadRegister(String),
    #[error("no DPDK port {name:?} (ports: {known})")]
    NoSuchPort { name: String, known: String },
    #[error("DPDK port {port}: {field} {value} is out of range {range}")]
    OutOfRange {
        port: String,
        field: &'static str,
        value: u64,
        range: String,
    },
    #[error("DPDK port {port}: {op} failed: {reason}")]
    Port {
        port: String,
        op: &'static str,
        reason: String,
    },
}

/// The DPDK environment (EAL) of this process. Cheap to clone; the EAL is
/// cleaned up when the last clone (ports hold one) is dropped.
#[derive(Clone)]
pub struct Eal {
    handle: Arc<sys::EalHandle>,
}

impl Eal {
    /// Starts the EAL with `args` (what would follow the program name on
    /// a DPDK application's command line, e.g. `["-l", "0", "--no-huge",
    /// "--no-pci", "--vdev", "net_null0"]`). Once per process: a second
    /// call is [`DpdkError::EalAlreadyInitialised`], even after a failure.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let mut argv = vec![CString::new("sluice").expect("no NUL in a literal")];
        for a in args {
            argv.push(CString::new(a.as_str()).map_err(|_| DpdkError::BadArgument(a.clone()))?);
        }
        match sys::EalHandle::init(argv) {
            Ok(h) => Ok(Eal {
                handle: Arc::new(h),
            }),
            Err(sys::EalInitError::AlreadyCalled) => Err(DpdkError::EalAlreadyInitialised),
            Err(sys::EalInitError::Failed(e)) => Err(DpdkError::EalInit(sys::strerror(e))),
        }
    }

    /// Gives the calling thread a DPDK lcore id (returned), so that the
    /// queues it polls use the mbuf pools' per-lcore caches. Call it on
    /// each worker thread; it is optional (unregistered threads work, a
    /// little slower). The thread that ran [`Eal::init`] already has one
    /// (the main lcore's), and so has a thread registered before: their
    /// id is returned as it is.
    pub fn register_thread(&self) -> Result<u32, DpdkError> {
        self.handle
            .register_thread()
            .map_err(|e| DpdkError::ThreadRegister(sys::strerror(e)))
    }

    /// The ethdev ports DPDK found (id and name), e.g. `(0, "net_null0")`.
    pub fn ports(&self) -> Vec<(u16, String)> {
        self.handle.ports()
    }
}

/// How to set up a port. The defaults suit a 1–10 GbE uplink and the
/// virtual devices the tests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkPortOptions {
    /// RX queues (spread by RSS over IP/TCP/UDP when more than one and the
    /// device can hash). Default 1. 0 makes a send-only port.
    pub rx_queues: u16,
    /// TX queues. Default 1. 0 makes a receive-only port.
    pub tx_queues: u16,
    /// Descriptors per RX and per TX ring; the driver may round it to its
    /// limits ([`DpdkPort::ring_sizes`] says what it chose). Default 1024.
    pub ring_size: u16,
    /// Mbufs in the port's pool. It must fill every RX ring, with room
    /// for TX rings and bursts in flight; 2^n − 1 suits DPDK's ring-based
    /// pools best. Default 8191 (about 18 MB with the default data room).
    pub mbufs: u32,
    /// Mbufs cached per lcore (clamped to DPDK's 512 and to 2/3 of the
    /// pool). Default 256.
    pub mbuf_cache: u32,
    /// Bytes per mbuf, DPDK's 128-byte headroom included. Default 2176
    /// (`RTE_MBUF_DEFAULT_BUF_SIZE`: a 1518-byte frame fits one mbuf).
    pub mbuf_data_room: u16,
    /// MTU to set; `None` keeps the driver's (usually 1500). Frames larger
    /// than one mbuf need the device's scatter RX (asked for when needed).
    pub mtu: Option<u16>,
    /// Receive frames for every MAC, not only the port's. Default false.
    pub promiscuous: bool,
    /// `PacketBuf`s each queue keeps for reuse (about 9.4 KB each), for
    /// frames that are copied. Default 512.
    pub buf_pool: usize,
    /// Zero copy: a received frame in one mbuf is handed to the engine in
    /// that mbuf, and a frame in an mbuf leaves as that mbuf. Off: every
    /// frame is copied both ways (the cost zero copy saves, for
    /// measuring). Default true.
    pub zero_copy: bool,
}

impl Default for DpdkPortOptions {
    fn default() -> Self {
        DpdkPortOptions {
            rx_queues: 1,
            tx_queues: 1,
            ring_size: 1024,
            mbufs: 8191,
            mbuf_cache: 256,
            mbuf_data_room: 2176,
            mtu: None,
            promiscuous: false,
            buf_pool: 512,
            zero_copy: true,
        }
    }
}

/// DPDK's headroom in front of each mbuf's data (`RTE_PKTMBUF_HEADROOM`).
const MBUF_HEADROOM: u16 = 128;
/// Ethernet header, one VLAN tag and the FCS around an MTU-sized payload.
const L2_OVERHEAD: u16 = 14 + 4 + 4;

/// A started DPDK port. Its queues ([`DpdkPort::take_queues`]) do the I/O;
/// this handle names the port and reads its counters.
pub struct DpdkPort {
    dev: Arc<sys::Device>,
    name: String,
    driver: String,
    queues: Vec<DpdkQueue>,
    counters: Vec<Arc<QueueCounters>>,
}

impl std::fmt::Debug for DpdkPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkPort")
            .field("id", &self.id())
            .field("name", &self.name)
            .field("driver", &self.driver)
            .field("queues", &self.counters.len())
            .finish()
    }
}

impl DpdkPort {
    /// Configures and starts the port named `port` — a device name as
    /// DPDK knows it (`net_ring0`, `0000:01:00.0`) or a port number
    /// (`"0"`) — with `opts`.
    pub fn open(eal: &Eal, port: &str, opts: DpdkPortOptions) -> Result<DpdkPort, DpdkError> {
        let id = match port.parse::<u16>() {
            Ok(id) => Some(id),
            Err(_) => CString::new(port)
                .ok()
                .and_then(|c| eal.handle.port_by_name(&c)),
        };
        let no_such = || DpdkError::NoSuchPort {
            name: port.to_string(),
            known: {
                let known: Vec<String> = eal
                    .ports()
                    .into_iter()
                    .map(|(i, n)| format!("{i}={n}"))
                    .collect();
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            },
        };
        let id = id.ok_or_else(no_such)?;
        let info = sys::dev_info(&eal.handle, id).map_err(|_| no_such())?;
        let name = info.name.clone();
        let out_of_range = |field: &'static str, value: u64, range: String| DpdkError::OutOfRange {
            port: name.clone(),
            field,
            value,
            range,
        };
        // One direction may have no queue (a capture file to replay, a
        // sink), not both.
        let min_rx = u16::from(opts.tx_queues == 0);
        if opts.rx_queues < min_rx || opts.rx_queues > info.max_rx_queues {
            return Err(out_of_range(
                "rx_queues",
                opts.rx_queues.into(),
                format!("{min_rx}..={}", info.max_rx_queues),
            ));
        }
        let min_tx = u16::from(opts.rx_queues == 0);
        if opts.tx_queues < min_tx || opts.tx_queues > info.max_tx_queues {
            return Err(out_of_range(
                "tx_queues",
                opts.tx_queues.into(),
                format!("{min_tx}..={}", info.max_tx_queues),
            ));
        }
        if opts.ring_size == 0 {
            return Err(out_of_range("ring_size", 0, "1..=65535".into()));
        }
        if opts.mbuf_data_room <= MBUF_HEADROOM {
            return Err(out_of_range(
                "mbuf_data_room",
                opts.mbuf_data_room.into(),
                format!("{}..=65535", MBUF_HEADROOM + 1),
            ));
        }
        // Every RX ring is filled at start, and each TX ring can hold a
        // ring's worth before the NIC completes it; a pool smaller than
        // that stalls RX (or fails to start).
        let rings =
            u32::from(opts.ring_size) * (u32::from(opts.rx_queues) + u32::from(opts.tx_queues));
        let min_mbufs = rings + 2 * sys::BURST as u32;
        if opts.mbufs < min_mbufs {
            return Err(out_of_range(
                "mbufs",
                opts.mbufs.into(),
                format!("{min_mbufs}.. (the rings hold {rings})"),
            ));
        }
        let flags = sys::flags();
        let mut rx_offloads = 0;
        if let Some(mtu) = opts.mtu {
            if mtu < info.min_mtu || mtu > info.max_mtu {
                return Err(out_of_range(
                    "mtu",
                    mtu.into(),
                    format!("{}..={}", info.min_mtu, info.max_mtu),
                ));
            }
            if mtu.saturating_add(L2_OVERHEAD) > opts.mbuf_data_room - MBUF_HEADROOM {
                if info.rx_offload_capa & flags.rx_scatter == 0 {
                    return Err(out_of_range(
                        "mtu",
                        mtu.into(),
                        format!(
                            "..={} (frames must fit one mbuf: the device cannot scatter; \
                             raise mbuf_data_room)",
                            opts.mbuf_data_room - MBUF_HEADROOM - L2_OVERHEAD
                        ),
                    ));
                }
                rx_offloads |= flags.rx_scatter;
            }
        }
        // The device's checksum verdict where it can give one: the switch
        // then need not verify the outer UDP checksum itself.
        rx_offloads |= info.rx_offload_capa & flags.rx_udp_cksum;
        let rss_hf = if opts.rx_queues > 1 {
            info.flow_type_rss_offloads & flags.rss_ip_tcp_udp
        } else {
            0
        };
        let cfg = sys::DeviceConfig {
            stats_while_running: sys::stats_safe_while_running(&info.driver),
            rx_queues: opts.rx_queues,
            tx_queues: opts.tx_queues,
            rx_desc: opts.ring_size,
            tx_desc: opts.ring_size,
            mbufs: opts.mbufs,
            // DPDK refuses a cache above 512 or above n / 1.5.
            mbuf_cache: opts.mbuf_cache.min(512).min(opts.mbufs / 3 * 2),
            data_room: opts.mbuf_data_room,
            rss_hf,
            rx_offloads,
            tx_offloads: info.tx_offload_capa & flags.tx_multi_segs,
            mtu: opts.mtu.unwrap_or(0),
            promiscuous: opts.promiscuous,
        };
        let (dev, queues) =
            sys::Device::open(&eal.handle, id, &cfg).map_err(|e| DpdkError::Port {
                port: name.clone(),
                op: e.op,
                reason: sys::strerror(e.errno),
            })?;
        let queues: Vec<DpdkQueue> = queues
            .into_iter()
            .map(|q| DpdkQueue::new(q, opts.buf_pool, opts.zero_copy))
            .collect();
        Ok(DpdkPort {
            counters: queues.iter().map(|q| q.counters.clone()).collect(),
            dev,
            name,
            driver: info.driver,
            queues,
        })
    }

    /// The port's DPDK id.
    pub fn id(&self) -> u16 {
        self.dev.port()
    }

    /// The port's name (`net_ring0`, a PCI address, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver behind it (`net_null`, `net_ice`, ...).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.dev.mac()
    }

    /// Descriptors per RX and per TX ring, as the driver set them.
    pub fn ring_sizes(&self) -> (u16, u16) {
        self.dev.ring_sizes()
    }

    /// The largest frame `tx_burst` sends: what fits one mbuf, or 64 KiB
    /// when the device takes mbuf chains. Larger (and empty) frames are
    /// counted in
    /// [`DpdkQueueCounters::tx_bad_size`] and not sent.
    pub fn max_frame(&self) -> usize {
        self.dev.max_tx_frame()
    }

    /// Mbufs of the port's pool that are free (neither in a ring nor in a
    /// burst in flight).
    pub fn mbufs_available(&self) -> u32 {
        self.dev.pool_available()
    }

    /// The port's queues, one per index (`max(rx_queues, tx_queues)`);
    /// queue `i` receives on RX queue `i` and sends on TX queue `i` (when
    /// they exist). The first call takes them all; later calls get none.
    pub fn take_queues(&mut self) -> Vec<DpdkQueue> {
        std::mem::take(&mut self.queues)
    }

    /// The port's counters: every queue's (added up) and the device's.
    pub fn counters(&self) -> Result<DpdkCounters, DpdkError> {
        let s = self.dev.stats().map_err(|e| DpdkError::Port {
            port: self.name.clone(),
            op: "rte_eth_stats_get",
            reason: if e == sys::ENOTSUP {
                "not read: the driver is not known to allow it while its queues run \
                 (sluice's own queue counters remain)"
                    .to_string()
            } else {
                sys::strerror(e)
            },
        })?;
        let mut queues = DpdkQueueCounters::default();
        for c in &self.counters {
            queues.add(&c.snapshot());
        }
        Ok(DpdkCounters {
            queues,
            dev_rx_packets: s.ipackets,
            dev_tx_packets: s.opackets,
            dev_rx_bytes: s.ibytes,
            dev_tx_bytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

/// One queue's counters, as sluice saw its traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DpdkQueueCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames the device did not take: its TX ring was full.
    pub tx_ring_full: u64,
    /// Frames not sent: the port's mbuf pool was empty.
    pub tx_no_mbuf: u64,
    /// Frames not sent: empty, or larger than the device takes (one mbuf,
    /// or 64 KiB when it takes mbuf chains).
    pub tx_bad_size: u64,
    /// Frames not sent: the port has no TX queue of this index (it was
    /// opened with fewer TX than RX queues).
    pub tx_no_queue: u64,
    /// Frames received but not delivered: larger than the buffer allotted
    /// (never expected: buffers are sized to each frame).
    pub rx_oversize: u64,
}

impl DpdkQueueCounters {
    /// Every counter with its stable name, for metrics and the CLI.
    pub fn named(&self) -> [(&'static str, u64); 9] {
        [
            ("rx_packets", self.rx_packets),
            ("rx_bytes", self.rx_bytes),
            ("tx_packets", self.tx_packets),
            ("tx_bytes", self.tx_bytes),
            ("tx_ring_full", self.tx_ring_full),
            ("tx_no_mbuf", self.tx_no_mbuf),
            ("tx_bad_size", self.tx_bad_size),
            ("tx_no_queue", self.tx_no_queue),
            ("rx_oversize", self.rx_oversize),
        ]
    }

    fn add(&mut self, o: &DpdkQueueCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_ring_full += o.tx_ring_full;
        self.tx_no_mbuf += o.tx_no_mbuf;
        self.tx_bad_size += o.tx_bad_size;
        self.tx_no_queue += o.tx_no_queue;
        self.rx_oversize += o.rx_oversize;
    }
}

/// A port's counters: its queues' (added up) and the device's own
/// (`rte_eth_stats`), which also see what never reached sluice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DpdkCounters {
    pub queues: DpdkQueueCounters,
    pub dev_rx_packets: u64,
    pub dev_tx_packets: u64,
    pub dev_rx_bytes: u64,
    pub dev_tx_bytes: u64,
    /// Frames the device dropped because no RX descriptor was free (sluice
    /// did not poll fast enough).
    pub imissed: u64,
    /// Frames received in error (bad FCS, too long, ...).
    pub ierrors: u64,
    /// Frames the device failed to send.
    pub oerrors: u64,
    /// RX mbuf allocation failures (the pool ran dry).
    pub rx_nombuf: u64,
}

impl DpdkCounters {
    /// Every counter with its stable name, for metrics and the CLI.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let mut v = self.queues.named().to_vec();
        v.extend([
            ("dev_rx_packets", self.dev_rx_packets),
            ("dev_tx_packets", self.dev_tx_packets),
            ("dev_rx_bytes", self.dev_rx_bytes),
            ("dev_tx_bytes", self.dev_tx_bytes),
            ("imissed", self.imissed),
            ("ierrors", self.ierrors),
            ("oerrors", self.oerrors),
            ("rx_nombuf", self.rx_nombuf),
        ]);
        v
    }
}

/// A queue's counters, written by the queue's owner only and readable by
/// anyone (the port's handle), without a lock.
#[derive(Default)]
struct QueueCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_ring_full: AtomicU64,
    tx_no_mbuf: AtomicU64,
    tx_bad_size: AtomicU64,
    tx_no_queue: AtomicU64,
    rx_oversize: AtomicU64,
}

/// Adds to a counter that only one thread writes: a plain load and store,
/// not a locked read-modify-write.
fn bump(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

impl QueueCounters {
    fn snapshot(&self) -> DpdkQueueCounters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DpdkQueueCounters {
            rx_packets: r(&self.rx_packets),
            rx_bytes: r(&self.rx_bytes),
            tx_packets: r(&self.tx_packets),
            tx_bytes: r(&self.tx_bytes),
            tx_ring_full: r(&self.tx_ring_full),
            tx_no_mbuf: r(&self.tx_no_mbuf),
            tx_bad_size: r(&self.tx_bad_size),
            tx_no_queue: r(&self.tx_no_queue),
            rx_oversize: r(&self.rx_oversize),
        }
    }
}

/// One RX/TX queue pair of a [`DpdkPort`], as a [`Backend`]. Owned by one
/// worker; the port stays open while any of its queues lives.
pub struct DpdkQueue {
    q: sys::Queue,
    /// Buffers to receive into: those `tx_burst` was given, reused.
    free: Vec<PacketBuf>,
    free_max: usize,
    /// Lend received mbufs to the engine ([`DpdkPortOptions::zero_copy`]).
    zero_copy: bool,
    counters: Arc<QueueCounters>,
}

impl std::fmt::Debug for DpdkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkQueue")
            .field("port", &self.q.device().port())
            .field("queue", &self.q.id())
            .field("rx", &self.q.has_rx())
            .field("tx", &self.q.has_tx())
            .finish()
    }
}

impl DpdkQueue {
    fn new(q: sys::Queue, free_max: usize, zero_copy: bool) -> DpdkQueue {
        // One burst's worth up front, so the first receptions do not
        // allocate.
        let prefill = free_max.min(sys::BURST);
        DpdkQueue {
            q,
            free: (0..prefill).map(|_| new_buf(0)).collect(),
            free_max,
            zero_copy,
            counters: Arc::default(),
        }
    }

    /// The queue index (RX and TX).
    pub fn id(&self) -> u16 {
        self.q.id()
    }

    /// This queue's counters.
    pub fn counters(&self) -> DpdkQueueCounters {
        self.counters.snapshot()
    }
}

/// A buffer with room for a `len`-byte frame after the engine's headroom:
/// a reused one from `free` when it is big enough.
fn take_buf(free: &mut Vec<PacketBuf>, len: usize) -> PacketBuf {
    let mut b = free.pop().unwrap_or_else(crate::backend::SharedPool::get);
    b.reset(DEFAULT_HEADROOM);
    if b.tailroom() >= len {
        return b;
    }
    crate::backend::SharedPool::put(b);
    new_buf(len)
}

/// A fresh buffer for frames up to the engine's largest, or `len`.
fn new_buf(len: usize) -> PacketBuf {
    PacketBuf::new(
        DEFAULT_HEADROOM,
        DEFAULT_HEADROOM + len.max(DEFAULT_CAPACITY - DEFAULT_HEADROOM),
    )
}

impl Backend for DpdkQueue {
    /// The port's link status (`rte_eth_link_get_nowait`); up when the
    /// driver cannot say.
    fn link_up(&mut self) -> bool {
        self.q.device().link_up().unwrap_or(true)
    }

    /// This queue's refusals and the device's own (`rte_eth_stats`, the
    /// reported by its queue 0 only): `imissed` (no RX descriptor free:
    /// sluice did not poll fast enough), `rx_nombuf` (the mbuf pool ran
    /// dry), `ierrors`, `oerrors`.
    fn device_drops(&mut self) -> Vec<(&'static str, u64)> {
        let c = self.counters.snapshot();
        let mut v = vec![
            ("tx_ring_full", c.tx_ring_full),
            ("tx_no_mbuf", c.tx_no_mbuf),
            ("tx_bad_size", c.tx_bad_size),
            ("tx_no_queue", c.tx_no_queue),
            ("rx_oversize", c.rx_oversize),
        ];
        // The device's counters once, on its first queue (every queue
        // would report the same numbers).
        if let Some(s) = (self.q.id() == 0)
            .then(|| self.q.device().stats().ok())
            .flatten()
        {
            v.extend([
                ("imissed", s.imissed),
                ("rx_nombuf", s.rx_nombuf),
                ("ierrors", s.ierrors),
                ("oerrors", s.oerrors),
            ]);
        }
        v
    }

    /// Receives up to `max` frames, copying each out of its mbuf(s) into
    /// a reused [`PacketBuf`] (with the engine's headroom).
    fn rx_burst(&mut self, bufs: &mut Vec<PacketBuf>, max: usize) -> io::Result<usize> {
        let (mut got, mut bytes, mut oversize) = (0usize, 0u64, 0u64);
        while got < max {
            let want = (max - got).min(sys::BURST);
            // The burst's mbufs are freed in bulk when it is dropped, at
            // the end of this iteration.
            let mut burst = self.q.rx(want);
            let n = burst.len();
            for i in 0..n {
                let len = burst.frame_len(i);
                if self.zero_copy {
                    if let Some(b) = burst.lend(i) {
                        bytes += len as u64;
                        bufs.push(b);
                        got += 1;
                        continue;
                    }
                }
                let mut b = take_buf(&mut self.free, len);
                let copied = match b.push_back(len) {
                    Ok(dst) => burst.copy_out(i, dst),
                    Err(_) => None,
                };
                if copied == Some(len) {
                    b.set_l4_csum_valid(burst.outer_l4_csum_good(i));
                    bytes += len as u64;
                    bufs.push(b);
                    got += 1;
                } else {
                    oversize += 1;
                    self.free.push(b);
                }
            }
            drop(burst);
            if n < want {
                break;
            }
        }
        let c = &self.counters;
        bump(&c.rx_packets, got as u64);
        bump(&c.rx_bytes, bytes);
        bump(&c.rx_oversize, oversize);
        Ok(got)
    }

    /// Sends the frames; returns how many the device took. A frame in an
    /// mbuf lent by a DPDK queue leaves as that mbuf; any other is copied
    /// into one. `pkts` is left empty: every copied buffer, sent or not, is
    /// kept for reuse by `rx_burst` (up to the pool's limit).
    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> io::Result<usize> {
        let mut total = sys::TxOutcome::default();
        let (free, free_max) = (&mut self.free, self.free_max);
        let mut keep = |b: PacketBuf| {
            if b.lender().is_some() {
                // Not ours to keep: back to its lender.
                drop(b);
            } else if free.len() < free_max {
                free.push(b);
            } else {
                // The rest go round to a backend that receives more than
                // it sends.
                crate::backend::SharedPool::put(b);
            }
        };
        while !pkts.is_empty() {
            let o = self.q.tx(pkts, sys::BURST, &mut keep);
            total.sent += o.sent;
            total.sent_bytes += o.sent_bytes;
            total.ring_full += o.ring_full;
            total.no_mbuf += o.no_mbuf;
            total.bad_size += o.bad_size;
            total.no_queue += o.no_queue;
        }
        let c = &self.counters;
        bump(&c.tx_packets, total.sent as u64);
        bump(&c.tx_bytes, total.sent_bytes);
        bump(&c.tx_ring_full, total.ring_full as u64);
        bump(&c.tx_no_mbuf, total.no_mbuf as u64);
        bump(&c.tx_bad_size, total.bad_size as u64);
        bump(&c.tx_no_queue, total.no_queue as u64);
        Ok(total.sent)
    }
}
