//! AF_PACKET sockets and their TPACKET_V3 receive ring.
//!
//! [`RxRing`] owns the mapping and hands out a block's bytes only while
//! the block belongs to user space (`TP_STATUS_USER`, read with acquire
//! ordering): the kernel does not write a block until it is given back
//! with [`RxRing::release`] (a release store), which needs `&mut self`, so
//! no slice into the block can outlive it.

use super::cvt;
use dataplane::PacketBuf;
use std::ffi::CString;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// `block_status` inside a block descriptor.
const BLOCK_STATUS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);

/// Frames sent per `sendmmsg` call: the iovecs and headers live on the
/// stack (about 6 KiB), so a burst needs no allocation.
pub(crate) const SEND_BATCH: usize = 64;

/// An AF_PACKET raw socket (non-blocking, close-on-exec).
pub(crate) struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// A socket that receives nothing until [`bind`](Self::bind)
    /// (protocol 0), so no frame is queued before the ring exists.
    pub(crate) fn new() -> io::Result<PacketSocket> {
        // SAFETY: socket takes integers only; a non-negative result is a
        // new descriptor that nothing else owns.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: `fd` was just returned by socket and is owned by no one.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PacketSocket { fd })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn borrow(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    fn setsockopt<T>(&self, opt: libc::c_int, val: &T) -> io::Result<()> {
        // SAFETY: the kernel reads `size_of::<T>()` bytes from `val`, a
        // live reference; every caller passes the type the option takes.
        cvt(unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_PACKET,
                opt,
                (val as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    /// Sets a socket buffer's size (`SO_RCVBUF`/`SO_SNDBUF`), past
    /// `net.core.rmem_max`/`wmem_max` when allowed (`SO_RCVBUFFORCE`/
    /// `SO_SNDBUFFORCE`, which need CAP_NET_ADMIN). Returns the size the
    /// kernel reports (twice what was asked: it counts its bookkeeping).
    pub(crate) fn set_buffer(&self, receive: bool, bytes: usize) -> io::Result<usize> {
        let (force, plain) = if receive {
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
        } else {
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
        };
        let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let set = |opt| {
            // SAFETY: the kernel reads an `int` from `val`, a live local.
            cvt(unsafe {
                libc::setsockopt(
                    self.fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&val as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            })
        };
        if set(force).is_err() {
            set(plain)?;
        }
        let mut got: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `got`, a
        // live local of that size, and the new length into `len`.
        cvt(unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                plain,
                (&mut got as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        Ok(usize::try_from(got).unwrap_or(0))
    }

    /// A `SOL_PACKET` option whose value is an `int`.
    pub(crate) fn set_int(&self, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
        self.setsockopt(opt, &val)
    }

    /// `PACKET_RX_RING` with a TPACKET_V3 request.
    pub(crate) fn set_rx_ring(&self, req: &libc::tpacket_req3) -> io::Result<()> {
        self.setsockopt(libc::PACKET_RX_RING, req)
    }

    /// `PACKET_ADD_MEMBERSHIP` of kind `PACKET_MR_PROMISC` (undone by the
    /// kernel when the socket closes).
    pub(crate) fn add_promiscuous(&self, ifindex: u32) -> io::Result<()> {
        self.add_membership(ifindex, libc::PACKET_MR_PROMISC)
    }

    /// `PACKET_ADD_MEMBERSHIP` of kind `PACKET_MR_ALLMULTI` (undone by the
    /// kernel when the socket closes).
    pub(crate) fn add_allmulti(&self, ifindex: u32) -> io::Result<()> {
        self.add_membership(ifindex, libc::PACKET_MR_ALLMULTI)
    }

    fn add_membership(&self, ifindex: u32, kind: libc::c_int) -> io::Result<()> {
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: kind as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        self.setsockopt(libc::PACKET_ADD_MEMBERSHIP, &mreq)
    }

    /// Binds to one interface and an ethertype (host order; ETH_P_ALL for
    /// every frame).
    pub(crate) fn bind(&self, ifindex: u32, protocol: u16) -> io::Result<()> {
        let sll = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as libc::c_ushort,
            sll_protocol: protocol.to_be(),
            sll_ifindex: ifindex as libc::c_int,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: bind reads a `sockaddr_ll` of the length given from a
        // live local.
        cvt(unsafe {
            libc::bind(
                self.fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    /// The kernel's ring counters since the last call (`PACKET_STATISTICS`
    /// clears them on read).
    pub(crate) fn stats(&self) -> io::Result<libc::tpacket_stats_v3> {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `st`, a live
        // local of that size, and updates `len`.
        cvt(unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        })?;
        Ok(st)
    }

    /// Sends up to [`SEND_BATCH`] frames with one `sendmmsg`, each
    /// preceded by `prefix` (the virtio-net header, or nothing); the
    /// socket's bound interface is the destination. Returns how many were
    /// sent (at least one), or the error the first frame met.
    pub(crate) fn send_batch(&self, prefix: &[u8], frames: &[PacketBuf]) -> io::Result<usize> {
        let n = frames.len().min(SEND_BATCH);
        if n == 0 {
            return Ok(0);
        }
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = [empty; 2 * SEND_BATCH];
        // SAFETY: `mmsghdr` is integers and pointers; all-zero is a valid
        // value (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
        let parts = if prefix.is_empty() { 1 } else { 2 };
        for (i, f) in frames[..n].iter().enumerate() {
            let f = f.as_slice();
            iov[2 * i] = libc::iovec {
                iov_base: prefix.as_ptr().cast_mut().cast(),
                iov_len: prefix.len(),
            };
            iov[2 * i + 1] = libc::iovec {
                iov_base: f.as_ptr().cast_mut().cast(),
                iov_len: f.len(),
            };
        }
        // One base pointer, taken after the last write to `iov`: a pointer
        // taken earlier would be invalidated by the later writes (each
        // `iov[k] = ...` reborrows the whole array mutably).
        let base = iov.as_mut_ptr();
        for (i, m) in msgs[..n].iter_mut().enumerate() {
            m.msg_hdr.msg_iov = base.wrapping_add(2 * i + 2 - parts);
            m.msg_hdr.msg_iovlen = parts as _;
        }
        // SAFETY: `msgs[..n]` point at iovecs in `iov`, which point at
        // `prefix` and the frames: all borrowed for the whole call, and
        // only read by the kernel (the `*mut` is what the C type says).
        // The kernel writes `msg_len` of each sent message, inside `msgs`.
        let r = cvt(unsafe { libc::sendmmsg(self.fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) })?;
        Ok(r as usize)
    }
}

/// Frames received per `recvmmsg` call (see [`PacketSocket::recv_batch`]).
pub(crate) const RECV_BATCH: usize = 32;

impl PacketSocket {
    /// Receives up to `heads.len()` (at most [`RECV_BATCH`]) waiting
    /// frames in one `recvmmsg`, without blocking. Message `i` lands in
    /// `hdrs[i][..hdr_len]` (the virtio-net header; `hdr_len` 0 when the
    /// socket has none), then in `heads[i]` (its whole frame: extend the
    /// buffer to its room first), then in `spill[i * spill_each..]`.
    /// `lens[i]` gets the bytes of message `i` (header included) and
    /// whether it was longer than all that (`MSG_TRUNC`). Returns how
    /// many arrived (0: none waits).
    pub(crate) fn recv_batch(
        &self,
        hdrs: &mut [[u8; 10]],
        hdr_len: usize,
        heads: &mut [PacketBuf],
        spill: &mut [u8],
        spill_each: usize,
        lens: &mut [(usize, bool)],
    ) -> io::Result<usize> {
        let n = heads
            .len()
            .min(hdrs.len())
            .min(lens.len())
            .min(spill.len() / spill_each.max(1))
            .min(RECV_BATCH);
        if n == 0 {
            return Ok(0);
        }
        let hdr_len = hdr_len.min(10);
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = [empty; 3 * RECV_BATCH];
        let spills = spill.chunks_exact_mut(spill_each);
        for (i, ((h, p), sp)) in hdrs
            .iter_mut()
            .zip(heads.iter_mut())
            .zip(spills)
            .take(n)
            .enumerate()
        {
            let head = p.as_mut_slice();
            iov[3 * i] = libc::iovec {
                iov_base: h.as_mut_ptr().cast(),
                iov_len: hdr_len,
            };
            iov[3 * i + 1] = libc::iovec {
                iov_base: head.as_mut_ptr().cast(),
                iov_len: head.len(),
            };
            iov[3 * i + 2] = libc::iovec {
                iov_base: sp.as_mut_ptr().cast(),
                iov_len: sp.len(),
            };
        }
        // SAFETY: `mmsghdr` is integers and pointers; all-zero is a valid
        // value (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        // One base pointer for all messages (see `send_batch`).
        let base = iov.as_mut_ptr();
        for (i, m) in msgs[..n].iter_mut().enumerate() {
            m.msg_hdr.msg_iov = base.wrapping_add(3 * i);
            m.msg_hdr.msg_iovlen = 3;
        }
        // SAFETY: `msgs[..n]` point at iovecs in `iov`, which point into
        // `hdrs`, `heads` and `spill`: exclusively borrowed for the whole
        // call, and written by the kernel only within the lengths given.
        // The kernel writes `msg_len` and `msg_flags` inside `msgs`.
        let r = unsafe {
            libc::recvmmsg(
                self.fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let got = match cvt(r) {
            Ok(r) => r as usize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        for (m, l) in msgs[..got].iter().zip(lens.iter_mut()) {
            *l = (
                m.msg_len as usize,
                m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            );
        }
        Ok(got)
    }
}

/// The index of interface `name`, in the calling thread's namespace.
pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name '{name}' contains NUL"),
        )
    })?;
    // SAFETY: `c` is a NUL-terminated string alive for the call, which
    // only reads it.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// The size of a memory page.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf takes an integer and returns one.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// A TPACKET_V3 receive ring mapped from a socket: `blocks` blocks of
/// `block_size` bytes.
pub(crate) struct RxRing {
    ptr: NonNull<u8>,
    len: usize,
    block_size: usize,
    blocks: usize,
}

// SAFETY: the ring is plain shared memory owned by this value (nothing
// else in the process maps it); moving it to another thread moves that
// ownership, and the kernel side synchronises through the status words
// with atomics.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Maps the ring set up on `sock` by `PACKET_RX_RING`.
    pub(crate) fn map(sock: &PacketSocket, block_size: usize, blocks: usize) -> io::Result<RxRing> {
        let len = block_size
            .checked_mul(blocks)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ring size overflows"))?;
        // SAFETY: a fresh shared mapping of the socket's ring (its size is
        // what PACKET_RX_RING was given); no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                sock.fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(RxRing {
            ptr,
            len,
            block_size,
            blocks,
        })
    }

    pub(crate) fn blocks(&self) -> usize {
        self.blocks
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: `i < blocks` (checked by callers through `blocks()`), so
        // the word is inside the mapping; it is 4-byte aligned (blocks are
        // page-aligned, the offset is 8), lives as long as `self`, and the
        // kernel only ever accesses it atomically or under its own barriers.
        unsafe {
            AtomicU32::from_ptr(
                self.ptr
                    .as_ptr()
                    .add(i * self.block_size + BLOCK_STATUS)
                    .cast(),
            )
        }
    }

    /// Block `i`'s bytes if it belongs to user space now, `None` if the
    /// kernel still fills it (or `i` is out of range).
    pub(crate) fn block(&self, i: usize) -> Option<&[u8]> {
        if i >= self.blocks {
            return None;
        }
        if self.status(i).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the block is inside the mapping; while its status says
        // TP_STATUS_USER (observed with acquire ordering, which makes the
        // kernel's writes visible) the kernel does not write it, and it
        // stays so until `release`, which takes `&mut self` and so cannot
        // run while this borrow lives.
        Some(unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(i * self.block_size), self.block_size)
        })
    }

    /// Gives block `i` back to the kernel.
    pub(crate) fn release(&mut self, i: usize) {
        if i < self.blocks {
            self.status(i)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are the mapping made in `map`, unmapped once;
        // no borrow of it can outlive `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
