//! The DPDK uplink's only unsafe code: every call into DPDK (through the
//! `dpdk-sys` bindings and its C shim) happens here, behind types whose
//! safe interface cannot break DPDK's rules:
//!
//! - [`EalHandle`] exists only after a successful `rte_eal_init`, is made
//!   at most once per process, and runs `rte_eal_cleanup` when the last
//!   owner drops it; everything that needs the EAL holds or borrows it.
//! - [`Device`] is one configured, started ethdev port with its mbuf pool.
//!   A port is opened at most once; dropping the device stops and closes
//!   the port *before* freeing the pool its rings hold mbufs from.
//! - [`Queue`] is the one handle to RX/TX queue `id` of a device (not
//!   `Clone`, methods take `&mut self`): DPDK queues are not thread-safe,
//!   and this makes a second user of a queue impossible.
//! - [`RxBurst`] owns received mbufs while they are lent or copied out,
//!   borrows its queue (so the pool outlives it) and frees the rest in
//!   bulk on drop.
//! - Zero copy: a received single-segment mbuf is *lent* to the engine as
//!   a [`PacketBuf`] over its whole buffer ([`RxBurst::lend`]); the buffer
//!   goes back to the pool when the `PacketBuf` is dropped, or is sent as
//!   the same mbuf by [`Queue::tx`]. The process counts the mbufs it has
//!   lent ([`LENT`]): while any is out, no pool is freed and the EAL is
//!   not cleaned up, so a lent buffer is valid memory as long as it lives
//!   (a port closed with buffers still out leaks its pool instead).
//!
//! Rust never touches an mbuf's fields: the shim's accessors do, compiled
//! against the installed headers.

#![allow(unsafe_code)]

use dataplane::packet::{Lent, PacketBuf};
use dpdk_sys as ffi;
use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Most mbufs moved by one call into the driver. 64 keeps the arrays on
/// the stack small (512 bytes) and is within what every PMD accepts.
pub(super) const BURST: usize = 64;

/// The tag of storage this module lends (see [`Lent`]): mbufs.
pub(super) const LENDER: u32 = u32::from_be_bytes(*b"mbuf");

/// Mbufs lent to the engine and not yet back (freed or sent).
static LENT: AtomicUsize = AtomicUsize::new(0);

/// Whether every lent mbuf is back (pools may be freed).
fn none_lent() -> bool {
    LENT.load(Ordering::Acquire) == 0
}

/// A lent mbuf's release: back to its pool.
fn release_mbuf(token: usize) {
    // SAFETY: `token` is a lent mbuf (made by `RxBurst::lend`), released
    // once (a Lent is dropped or reclaimed, never both); its pool is not
    // freed while LENT counts it.
    unsafe { ffi::sluice_pktmbuf_free(token as *mut ffi::rte_mbuf) };
    LENT.fetch_sub(1, Ordering::Release);
}

// Linux errno values for the errors found here rather than by DPDK.
const E2BIG: c_int = 7;
const EBUSY: c_int = 16;
const ENODEV: c_int = 19;
/// Operation not supported (Linux errno 95).
pub(super) const ENOTSUP: c_int = 95;
const EINVAL: c_int = 22;

/// Largest frame sent as an mbuf chain (an mbuf's `pkt_len` is 32 bits,
/// but no NIC takes more than a 64 KiB TSO segment).
const MAX_CHAIN_FRAME: usize = 65535;

/// DPDK's text for an errno value (positive), including its own codes.
pub(super) fn strerror(errnum: c_int) -> String {
    // SAFETY: rte_strerror accepts any value and returns a pointer to a
    // NUL-terminated string (static, or in a per-thread buffer).
    let p = unsafe { ffi::rte_strerror(errnum) };
    if p.is_null() {
        return format!("error {errnum}");
    }
    // SAFETY: non-null and NUL-terminated (above); copied out at once, on
    // the thread whose buffer it may be.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The calling thread's `rte_errno`.
fn last_errno() -> c_int {
    // SAFETY: reads a thread-local int; valid on any thread, any time.
    unsafe { ffi::sluice_rte_errno() }
}

/// Why the EAL did not start.
pub(super) enum EalInitError {
    /// `rte_eal_init` was already called in this process (successfully or
    /// not): DPDK cannot initialise twice.
    AlreadyCalled,
    /// `rte_eal_init` failed with this `rte_errno`.
    Failed(c_int),
}

static EAL_INIT_CALLED: AtomicBool = AtomicBool::new(false);

/// Proof that the EAL is up. Dropping the last one cleans the EAL up.
pub(super) struct EalHandle {
    /// The argument strings, kept for as long as the EAL runs in case
    /// DPDK kept a pointer into one (it copies what it keeps, as far as
    /// 22.11 goes, but nothing says it must).
    _args: Vec<CString>,
}

impl EalHandle {
    /// Runs `rte_eal_init` with `args` (`args[0]` is the program name).
    pub(super) fn init(args: Vec<CString>) -> Result<EalHandle, EalInitError> {
        if EAL_INIT_CALLED.swap(true, Ordering::SeqCst) {
            return Err(EalInitError::AlreadyCalled);
        }
        let argc = c_int::try_from(args.len()).map_err(|_| EalInitError::Failed(E2BIG))?;
        // getopt may reorder this array of pointers; it never writes into
        // the strings themselves.
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
        argv.push(ptr::null_mut());
        // SAFETY: argv holds argc pointers to NUL-terminated strings and a
        // final NULL, like C's main; the strings outlive the EAL (kept in
        // the handle). EAL_INIT_CALLED makes this the process's only call.
        let rc = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(EalInitError::Failed(last_errno()));
        }
        Ok(EalHandle { _args: args })
    }

    /// Gives the calling thread an lcore id (so mempools use their
    /// per-lcore caches on it); returns the id.
    pub(super) fn register_thread(&self) -> Result<u32, c_int> {
        // SAFETY: reads the calling thread's lcore id (thread-local).
        let id = unsafe { ffi::sluice_lcore_id() };
        if id != ffi::LCORE_ID_ANY {
            // An EAL thread (the one that ran rte_eal_init) or one already
            // registered: registering again would give it a second id.
            return Ok(id);
        }
        // SAFETY: the EAL is up (self exists) and this thread has no
        // lcore id yet.
        let rc = unsafe { ffi::rte_thread_register() };
        if rc < 0 {
            return Err(last_errno());
        }
        // SAFETY: reads the calling thread's lcore id (thread-local).
        Ok(unsafe { ffi::sluice_lcore_id() })
    }

    /// The ethdev ports the EAL probed, with their names.
    pub(super) fn ports(&self) -> Vec<(u16, String)> {
        (0..ffi::RTE_MAX_ETHPORTS)
            .filter_map(|p| u16::try_from(p).ok())
            .filter_map(|p| port_name(self, p).map(|n| (p, n)))
            .collect()
    }

    /// The port id of the ethdev named `name` (a vdev name such as
    /// `net_null0`, or a PCI address).
    pub(super) fn port_by_name(&self, name: &CStr) -> Option<u16> {
        let mut id = 0u16;
        // SAFETY: name is NUL-terminated; id is a valid out-pointer; the
        // EAL is up.
        let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut id) };
        (rc == 0).then_some(id)
    }
}

fn port_name(_eal: &EalHandle, port: u16) -> Option<String> {
    // SAFETY: any port id may be asked about once the EAL is up.
    if unsafe { ffi::rte_eth_dev_is_valid_port(port) } == 0 {
        return None;
    }
    let mut buf = [0 as c_char; ffi::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes, as the function requires.
    let rc = unsafe { ffi::rte_eth_dev_get_name_by_port(port, buf.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success DPDK wrote a NUL-terminated name into buf.
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

impl Drop for EalHandle {
    fn drop(&mut self) {
        if !none_lent() {
            // A buffer still lent lives in EAL memory: leave it mapped.
            return;
        }
        // SAFETY: the last handle is going, so no Device (each holds one)
        // and no other user of the EAL is left; no mbuf is lent.
        unsafe { ffi::rte_eal_cleanup() };
    }
}

/// What a device says it can do (`rte_eth_dev_info`), in plain values.
pub(super) struct DevInfo {
    pub(super) name: String,
    pub(super) driver: String,
    pub(super) max_rx_queues: u16,
    pub(super) max_tx_queues: u16,
    pub(super) rx_offload_capa: u64,
    pub(super) tx_offload_capa: u64,
    pub(super) flow_type_rss_offloads: u64,
    pub(super) min_mtu: u16,
    pub(super) max_mtu: u16,
}

/// The offload and RSS flags sluice asks for (DPDK defines them with
/// macros bindgen cannot evaluate; the shim returns them).
pub(super) struct Flags {
    pub(super) tx_multi_segs: u64,
    pub(super) rx_scatter: u64,
    pub(super) rss_ip_tcp_udp: u64,
    pub(super) rx_udp_cksum: u64,
}

pub(super) fn flags() -> Flags {
    // SAFETY: these shim functions only return constants.
    unsafe {
        Flags {
            tx_multi_segs: ffi::sluice_eth_tx_offload_multi_segs(),
            rx_scatter: ffi::sluice_eth_rx_offload_scatter(),
            rss_ip_tcp_udp: ffi::sluice_eth_rss_ip_tcp_udp(),
            rx_udp_cksum: ffi::sluice_eth_rx_offload_udp_cksum(),
        }
    }
}

pub(super) fn dev_info(eal: &EalHandle, port: u16) -> Result<DevInfo, c_int> {
    let name = port_name(eal, port).ok_or(ENODEV)?;
    let mut info = ffi::rte_eth_dev_info::default();
    // SAFETY: info is a valid, writable rte_eth_dev_info; the EAL is up.
    let rc = unsafe { ffi::rte_eth_dev_info_get(port, &mut info) };
    if rc < 0 {
        return Err(-rc);
    }
    let driver = if info.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: a non-null driver_name is the driver's static,
        // NUL-terminated name.
        unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned()
    };
    Ok(DevInfo {
        name,
        driver,
        max_rx_queues: info.max_rx_queues,
        max_tx_queues: info.max_tx_queues,
        rx_offload_capa: info.rx_offload_capa,
        tx_offload_capa: info.tx_offload_capa,
        flow_type_rss_offloads: info.flow_type_rss_offloads,
        min_mtu: info.min_mtu,
        max_mtu: info.max_mtu,
    })
}

/// How to set a device up; the caller has checked it against [`DevInfo`].
pub(super) struct DeviceConfig {
    /// See [`stats_safe_while_running`].
    pub(super) stats_while_running: bool,
    pub(super) rx_queues: u16,
    pub(super) tx_queues: u16,
    /// Descriptors per ring, before the driver's limits are applied.
    pub(super) rx_desc: u16,
    pub(super) tx_desc: u16,
    pub(super) mbufs: u32,
    pub(super) mbuf_cache: u32,
    /// Bytes per mbuf including DPDK's headroom.
    pub(super) data_room: u16,
    /// Non-zero: spread RX over the queues by these RSS hash types.
    pub(super) rss_hf: u64,
    pub(super) rx_offloads: u64,
    pub(super) tx_offloads: u64,
    /// 0: the driver's default.
    pub(super) mtu: u16,
    pub(super) promiscuous: bool,
}

/// A failed step of opening a device, and its errno.
pub(super) struct OpError {
    pub(super) op: &'static str,
    pub(super) errno: c_int,
}

fn check(op: &'static str, rc: c_int) -> Result<(), OpError> {
    if rc < 0 {
        Err(OpError { op, errno: -rc })
    } else {
        Ok(())
    }
}

/// Ports with a live [`Device`]: a port is configured by one owner only.
static OPEN_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

fn open_ports() -> std::sync::MutexGuard<'static, Vec<u16>> {
    OPEN_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// One configured and started port, and the mbuf pool its RX rings (and
/// sluice's TX) draw from.
pub(super) struct Device {
    _eal: Arc<EalHandle>,
    port: u16,
    /// Null until the pool exists (an open that fails before has none).
    pool: *mut ffi::rte_mempool,
    /// The port was configured: it must be closed on drop.
    configured: bool,
    started: bool,
    rx_desc: u16,
    tx_desc: u16,
    /// Largest frame TX copies into mbufs (one mbuf, or a chain when the
    /// device takes multi-segment frames).
    max_tx_frame: usize,
    mac: [u8; 6],
    /// Serialises `rte_eth_stats_get`: some drivers accumulate hardware
    /// counters into a shared struct when read.
    stats_lock: Mutex<()>,
    /// The driver's counters may be read while other threads run its
    /// queues ([`stats_safe_while_running`]); if not, they are not read.
    stats_while_running: bool,
}

/// Drivers whose `stats_get` only reads counters each queue's thread
/// keeps for itself (plain aligned 64-bit loads: a stale value, never a
/// torn one or a write), checked in their DPDK 22.11 sources: `net_null`
/// (`eth_stats_get` sums `rx_pkts`/`tx_pkts` of each queue), `net_ring`
/// (per-queue atomics), `net_pcap` (per-queue `rx_stat`/`tx_stat`),
/// `net_af_packet` and `net_tap` (per-queue counters). DPDK does not
/// promise this for every driver (ethdev calls are not thread-safe
/// against the data path unless the driver says so), so on any other
/// driver sluice does not read the device's counters while it runs:
/// its own per-queue counters remain.
pub(super) fn stats_safe_while_running(driver: &str) -> bool {
    matches!(
        driver,
        "net_null" | "net_ring" | "net_pcap" | "net_af_packet" | "net_tap"
    )
}

// SAFETY: a Device's raw pointer is its mempool, which DPDK makes safe to
// use from any thread (the default "ring_mp_mc" ops); the port's control
// functions run only in open and drop, which have the device to themselves.
unsafe impl Send for Device {}
// SAFETY: the shared operations (&self) are thread-safe: pool allocation
// (the mempool's multi-producer/multi-consumer ring), and stats, which are
// read only for drivers checked to allow it while their queues run
// (`stats_safe_while_running`), one reader at a time (`stats_lock`).
// Queue operations need a Queue, owned by one thread.
unsafe impl Sync for Device {}

impl Device {
    /// Configures, sets up and starts `port`; returns the device and one
    /// [`Queue`] per queue index (`max(rx_queues, tx_queues)` of them).
    pub(super) fn open(
        eal: &Arc<EalHandle>,
        port: u16,
        cfg: &DeviceConfig,
    ) -> Result<(Arc<Device>, Vec<Queue>), OpError> {
        {
            let mut open = open_ports();
            if open.contains(&port) {
                return Err(OpError {
                    op: "open (the port is already open)",
                    errno: EBUSY,
                });
            }
            open.push(port);
        }
        // From here the device's Drop undoes whatever was done.
        let mut dev = Device {
            _eal: eal.clone(),
            port,
            pool: ptr::null_mut(),
            configured: false,
            started: false,
            rx_desc: cfg.rx_desc,
            tx_desc: cfg.tx_desc,
            max_tx_frame: 0,
            mac: [0; 6],
            stats_lock: Mutex::new(()),
            stats_while_running: cfg.stats_while_running,
        };
        // SAFETY: port was checked by the caller (dev_info) and is ours
        // alone (OPEN_PORTS).
        if unsafe { ffi::rte_eth_dev_is_valid_port(port) } == 0 {
            return Err(OpError {
                op: "open (no such port)",
                errno: ENODEV,
            });
        }

        let mut conf = ffi::rte_eth_conf::default();
        if cfg.rss_hf != 0 {
            conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = cfg.rss_hf;
        }
        conf.rxmode.offloads = cfg.rx_offloads;
        conf.rxmode.mtu = u32::from(cfg.mtu);
        conf.txmode.offloads = cfg.tx_offloads;
        // SAFETY: conf is a valid rte_eth_conf (zeroed, then filled); the
        // port is stopped (never started by us, and ours alone).
        let rc = unsafe { ffi::rte_eth_dev_configure(port, cfg.rx_queues, cfg.tx_queues, &conf) };
        check("rte_eth_dev_configure", rc)?;
        dev.configured = true;

        // SAFETY: both pointers are valid u16s; the port is configured.
        let rc = unsafe {
            ffi::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut dev.rx_desc, &mut dev.tx_desc)
        };
        check("rte_eth_dev_adjust_nb_rx_tx_desc", rc)?;

        // SAFETY: any valid port may be asked for its socket.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(port) };
        let socket = if socket < 0 {
            ffi::SOCKET_ID_ANY
        } else {
            socket
        };
        let pool_name = CString::new(format!("sluice_p{port}")).map_err(|_| OpError {
            op: "mempool name",
            errno: EINVAL,
        })?;
        // SAFETY: the name is NUL-terminated; the other arguments are
        // plain values the function validates.
        dev.pool = unsafe {
            ffi::rte_pktmbuf_pool_create(
                pool_name.as_ptr(),
                cfg.mbufs,
                cfg.mbuf_cache,
                0,
                cfg.data_room,
                socket,
            )
        };
        if dev.pool.is_null() {
            return Err(OpError {
                op: "rte_pktmbuf_pool_create",
                errno: last_errno(),
            });
        }

        // DPDK takes SOCKET_ID_ANY (-1) as an unsigned here.
        let socket = socket as c_uint;
        for q in 0..cfg.rx_queues {
            // SAFETY: the pool is valid and outlives the queue (freed in
            // drop only after the port is closed); a NULL rxconf asks for
            // the driver's defaults.
            let rc = unsafe {
                ffi::rte_eth_rx_queue_setup(port, q, dev.rx_desc, socket, ptr::null(), dev.pool)
            };
            check("rte_eth_rx_queue_setup", rc)?;
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: a NULL txconf asks for the driver's defaults.
            let rc =
                unsafe { ffi::rte_eth_tx_queue_setup(port, q, dev.tx_desc, socket, ptr::null()) };
            check("rte_eth_tx_queue_setup", rc)?;
        }
        if cfg.promiscuous {
            // SAFETY: the port is configured.
            let rc = unsafe { ffi::rte_eth_promiscuous_enable(port) };
            check("rte_eth_promiscuous_enable", rc)?;
        }
        // SAFETY: the port is configured and all its queues are set up.
        let rc = unsafe { ffi::rte_eth_dev_start(port) };
        check("rte_eth_dev_start", rc)?;
        dev.started = true;

        let mut mac = ffi::rte_ether_addr::default();
        // SAFETY: mac is a valid, writable rte_ether_addr.
        let rc = unsafe { ffi::rte_eth_macaddr_get(port, &mut mac) };
        check("rte_eth_macaddr_get", rc)?;
        dev.mac = mac.addr_bytes;

        let one_mbuf =
            usize::from(cfg.data_room).saturating_sub(ffi::RTE_PKTMBUF_HEADROOM as usize);
        dev.max_tx_frame = if cfg.tx_offloads & flags().tx_multi_segs != 0 {
            MAX_CHAIN_FRAME
        } else {
            one_mbuf
        };

        let dev = Arc::new(dev);
        let queues = (0..cfg.rx_queues.max(cfg.tx_queues))
            .map(|id| Queue {
                dev: dev.clone(),
                id,
                rx: id < cfg.rx_queues,
                tx: id < cfg.tx_queues,
            })
            .collect();
        Ok((dev, queues))
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    pub(super) fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Descriptors per RX and TX ring, after the driver's limits.
    pub(super) fn ring_sizes(&self) -> (u16, u16) {
        (self.rx_desc, self.tx_desc)
    }

    /// Largest frame TX sends (one mbuf, or 64 KiB as a chain).
    pub(super) fn max_tx_frame(&self) -> usize {
        self.max_tx_frame
    }

    /// The device's own counters.
    pub(super) fn stats(&self) -> Result<DevStats, c_int> {
        if !self.stats_while_running {
            return Err(ENOTSUP);
        }
        let mut s = ffi::rte_eth_stats::default();
        let _one_reader = self.stats_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: s is a valid, writable rte_eth_stats; the port is
        // started; drivers read their counters alongside RX/TX, and the
        // lock keeps two readers apart.
        let rc = unsafe { ffi::rte_eth_stats_get(self.port, &mut s) };
        if rc != 0 {
            return Err(rc.abs());
        }
        Ok(DevStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Whether the port's link is up, as the driver last knew it
    /// (`rte_eth_link_get_nowait`: never waits for the NIC); `None` if
    /// the driver cannot say.
    pub(super) fn link_up(&self) -> Option<bool> {
        let mut l = ffi::rte_eth_link::default();
        // SAFETY: l is a valid, writable rte_eth_link; the port is valid
        // and started while the device lives; the call only reads the
        // status the driver keeps (testpmd calls it while queues run).
        let rc = unsafe { ffi::rte_eth_link_get_nowait(self.port, &mut l) };
        (rc == 0).then(|| l.link_status() != 0)
    }

    /// Mbufs of the pool not in use (in rings, in flight or cached).
    pub(super) fn pool_available(&self) -> u32 {
        // SAFETY: the pool is valid while the device lives.
        unsafe { ffi::rte_mempool_avail_count(self.pool) }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // The last Queue is gone (each holds the device), so nothing is
        // polling. Stop and close before freeing the pool: the rings hold
        // mbufs from it, and closing gives them back.
        if self.started {
            // SAFETY: the port is started and ours.
            unsafe { ffi::rte_eth_dev_stop(self.port) };
        }
        if self.configured {
            // SAFETY: the port is stopped (or was never started) and ours.
            unsafe { ffi::rte_eth_dev_close(self.port) };
        }
        if !self.pool.is_null() && none_lent() {
            // SAFETY: no ring and no RxBurst (each borrows a Queue, which
            // holds the device) has an mbuf from the pool any more, and
            // no mbuf is lent (else the pool is left allocated).
            unsafe { ffi::rte_mempool_free(self.pool) };
        }
        open_ports().retain(|&p| p != self.port);
    }
}

/// A device's counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DevStats {
    pub(super) ipackets: u64,
    pub(super) opackets: u64,
    pub(super) ibytes: u64,
    pub(super) obytes: u64,
    pub(super) imissed: u64,
    pub(super) ierrors: u64,
    pub(super) oerrors: u64,
    pub(super) rx_nombuf: u64,
}

/// The one handle to RX queue `id` (if `rx`) and TX queue `id` (if `tx`).
pub(super) struct Queue {
    dev: Arc<Device>,
    id: u16,
    rx: bool,
    tx: bool,
}

/// What one TX call did with its frames.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct TxOutcome {
    /// Frames the device took, and their bytes.
    pub(super) sent: usize,
    pub(super) sent_bytes: u64,
    /// Not taken: the TX ring was full.
    pub(super) ring_full: usize,
    /// Not sent: the mbuf pool was empty.
    pub(super) no_mbuf: usize,
    /// Not sent: empty, or larger than the device can take.
    pub(super) bad_size: usize,
    /// Not sent: the port has no TX queue with this index.
    pub(super) no_queue: usize,
}

impl Queue {
    pub(super) fn id(&self) -> u16 {
        self.id
    }

    pub(super) fn has_rx(&self) -> bool {
        self.rx
    }

    pub(super) fn has_tx(&self) -> bool {
        self.tx
    }

    pub(super) fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    /// Receives up to `max` (at most [`BURST`]) frames.
    pub(super) fn rx(&mut self, max: usize) -> RxBurst<'_> {
        let mut b = RxBurst {
            queue: self,
            mbufs: [ptr::null_mut(); BURST],
            frames: [ffi::sluice_rx_frame {
                buf: ptr::null_mut(),
                pkt_len: 0,
                buf_len: 0,
                data_off: 0,
                lendable: 0,
                outer_l4_good: 0,
            }; BURST],
            len: 0,
        };
        if !b.queue.rx {
            return b;
        }
        let want = max.min(BURST) as u16;
        // SAFETY: the queue is set up and started, and this Queue is its
        // only user (&mut self); mbufs has room for `want` pointers.
        let n = unsafe {
            ffi::sluice_eth_rx_burst(b.queue.dev.port, b.queue.id, b.mbufs.as_mut_ptr(), want)
        };
        b.len = usize::from(n).min(BURST);
        // SAFETY: mbufs[..len] are received mbufs we own; frames has room
        // for len entries; the shim only reads the mbufs.
        unsafe {
            ffi::sluice_pktmbuf_describe(b.mbufs.as_ptr(), b.len as c_uint, b.frames.as_mut_ptr())
        };
        b
    }

    /// Sends up to [`BURST`] frames (`pkts`, whose first `k` are taken):
    /// a frame in an mbuf this module lent goes as that mbuf, in place;
    /// any other is copied into a fresh one (allocated for all of them in
    /// one bulk call) and its buffer handed to `keep` for reuse. Frames the
    /// device does not take are freed and counted; none is retried.
    pub(super) fn tx(
        &mut self,
        pkts: &mut Vec<PacketBuf>,
        k: usize,
        mut keep: impl FnMut(PacketBuf),
    ) -> TxOutcome {
        let mut out = TxOutcome::default();
        let k = k.min(BURST).min(pkts.len());
        if k == 0 {
            return out;
        }
        if !self.tx {
            out.no_queue = k;
            pkts.drain(..k).for_each(keep);
            return out;
        }
        let copies = pkts[..k]
            .iter()
            .filter(|p| p.lender() != Some(LENDER))
            .count();
        let mut fresh: [*mut ffi::rte_mbuf; BURST] = [ptr::null_mut(); BURST];
        // SAFETY: the pool is valid while the device lives; fresh has room
        // for `copies` pointers. All or nothing: on failure none was
        // allocated.
        let have_fresh = copies == 0
            || unsafe {
                ffi::sluice_pktmbuf_alloc_bulk(self.dev.pool, fresh.as_mut_ptr(), copies as c_uint)
            } == 0;
        let mut next_fresh = 0;
        let mut mbufs: [*mut ffi::rte_mbuf; BURST] = [ptr::null_mut(); BURST];
        let mut lens = [0u32; BURST];
        let mut filled = 0;
        let mut reclaimed = 0;
        for p in pkts.drain(..k) {
            let len = p.len();
            let fits = len > 0 && len <= self.dev.max_tx_frame;
            let p = match p.into_lent() {
                Ok((lent, start, end)) if lent.lender() == LENDER => {
                    let m = lent.reclaim() as *mut ffi::rte_mbuf;
                    reclaimed += 1;
                    // SAFETY: m is an mbuf this module lent, ours again
                    // (reclaimed), single-segment (lent only so); start
                    // and end lie within its buffer (a PacketBuf keeps
                    // them inside its storage), so they fit 16 bits.
                    let ok = fits
                        && unsafe {
                            ffi::sluice_pktmbuf_set_frame(m, start as u16, (end - start) as u16)
                        } == 0;
                    if ok {
                        mbufs[filled] = m;
                        lens[filled] = len as u32;
                        filled += 1;
                    } else {
                        out.bad_size += 1;
                        // SAFETY: m is ours and not in mbufs[..filled].
                        unsafe { ffi::sluice_pktmbuf_free(m) };
                    }
                    continue;
                }
                Ok((lent, start, end)) => PacketBuf::from_lent(lent, start, end),
                Err(p) => p,
            };
            if !have_fresh {
                out.no_mbuf += 1;
                keep(p);
                continue;
            }
            let m = fresh[next_fresh];
            next_fresh += 1;
            let f = p.as_slice();
            // SAFETY: m is a fresh, empty mbuf from the pool; f is valid
            // for f.len() bytes (at most MAX_CHAIN_FRAME, so it fits u32);
            // more segments, if needed, come from the same pool.
            let ok = fits
                && unsafe {
                    ffi::sluice_pktmbuf_copy_in(self.dev.pool, m, f.as_ptr().cast(), f.len() as u32)
                } == 0;
            if ok {
                mbufs[filled] = m;
                lens[filled] = len as u32;
                filled += 1;
            } else {
                if fits {
                    out.no_mbuf += 1;
                } else {
                    out.bad_size += 1;
                }
                // SAFETY: m (and any segments chained to it) is ours and
                // is not in `mbufs[..filled]`.
                unsafe { ffi::sluice_pktmbuf_free(m) };
            }
            keep(p);
        }
        if reclaimed > 0 {
            LENT.fetch_sub(reclaimed, Ordering::Release);
        }
        // SAFETY: the queue is set up and started, and this Queue is its
        // only user; mbufs[..filled] are filled mbufs we own. The device
        // takes ownership of the first `sent`.
        let sent = unsafe {
            ffi::sluice_eth_tx_burst(self.dev.port, self.id, mbufs.as_mut_ptr(), filled as u16)
        };
        let sent = usize::from(sent).min(filled);
        if sent < filled {
            // SAFETY: mbufs[sent..filled] were not taken by the device and
            // are still ours.
            unsafe {
                ffi::sluice_pktmbuf_free_bulk(mbufs[sent..].as_mut_ptr(), (filled - sent) as c_uint)
            };
        }
        out.sent = sent;
        out.ring_full = filled - sent;
        out.sent_bytes = lens[..sent].iter().map(|&l| u64::from(l)).sum();
        out
    }
}

/// Received mbufs, owned until lent or dropped (freed in bulk then).
pub(super) struct RxBurst<'q> {
    /// Borrowed so the device (and its pool) outlives the mbufs.
    queue: &'q mut Queue,
    /// Null where an mbuf was lent.
    mbufs: [*mut ffi::rte_mbuf; BURST],
    frames: [ffi::sluice_rx_frame; BURST],
    len: usize,
}

impl RxBurst<'_> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The length of frame `i` (`i < len()`).
    pub(super) fn frame_len(&self, i: usize) -> usize {
        self.frames[..self.len]
            .get(i)
            .map_or(0, |f| f.pkt_len as usize)
    }

    /// Whether the device verified frame `i`'s outermost UDP checksum
    /// good (see the shim: an outer verdict, or an L4 one with no tunnel
    /// seen).
    pub(super) fn outer_l4_csum_good(&self, i: usize) -> bool {
        self.frames[..self.len]
            .get(i)
            .is_some_and(|f| f.outer_l4_good != 0)
    }

    /// Frame `i` in its own mbuf, lent (zero copy): `None` if it cannot
    /// be (a chain, a shared buffer) or was lent already; copy it out then.
    pub(super) fn lend(&mut self, i: usize) -> Option<PacketBuf> {
        let f = *self.frames[..self.len].get(i)?;
        let m = self.mbufs[i];
        if m.is_null() || f.lendable == 0 || f.buf.is_null() {
            return None;
        }
        self.mbufs[i] = ptr::null_mut();
        LENT.fetch_add(1, Ordering::Acquire);
        // SAFETY: m is a received mbuf we own, a direct one referenced
        // once (the shim checked), so its buffer — `buf_len` bytes at
        // `buf`, apart from the mbuf header — is written by nobody else;
        // it now belongs to the Lent, which frees the mbuf when dropped
        // (or hands it back to `Queue::tx`), and its pool is not freed
        // while LENT counts it: the slice is valid for as long as the
        // Lent lives.
        let bytes: &'static mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(f.buf.cast::<u8>(), usize::from(f.buf_len)) };
        let start = usize::from(f.data_off);
        let end = start + f.pkt_len as usize;
        let mut p = PacketBuf::from_lent(
            Lent::new(bytes, LENDER, m as usize, release_mbuf),
            start,
            end,
        );
        p.set_l4_csum_valid(f.outer_l4_good != 0);
        Some(p)
    }

    /// Copies frame `i` (every segment) to the front of `dst`; `None` if
    /// it does not fit (nothing is copied then).
    pub(super) fn copy_out(&self, i: usize, dst: &mut [u8]) -> Option<usize> {
        let &m = self.mbufs[..self.len].get(i).filter(|m| !m.is_null())?;
        let cap = u32::try_from(dst.len()).unwrap_or(u32::MAX - 1);
        // SAFETY: m is a received mbuf we own; dst is writable for cap
        // bytes, and the shim writes at most cap (it checks pkt_len
        // first and stops at it).
        let n = unsafe { ffi::sluice_pktmbuf_copy_out(m, dst.as_mut_ptr().cast(), cap) };
        (n != u32::MAX).then_some(n as usize)
    }
}

impl Drop for RxBurst<'_> {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: mbufs[..len] are received mbufs we own (or null:
            // lent, skipped by the free), freed once.
            unsafe { ffi::sluice_pktmbuf_free_bulk(self.mbufs.as_mut_ptr(), self.len as c_uint) };
        }
    }
}
