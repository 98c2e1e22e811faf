//! An interface's link state from the kernel: an rtnetlink socket
//! (non-blocking) subscribed to the link group, RTNLGRP_LINK, which the
//! kernel tells of every change of an interface's flags (carrier
//! included), and asked once for the current state.
//!
//! The messages are parsed from bytes (safe code); only the socket calls
//! are unsafe.

use super::cvt;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDR: usize = 16;
/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFO: usize = 16;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTMGRP_LINK: u32 = 1;

pub(crate) struct LinkWatch {
    fd: OwnedFd,
    ifindex: u32,
    up: bool,
}

impl LinkWatch {
    /// Watches interface `ifindex` (in the calling thread's network
    /// namespace); its state is known after the first [`LinkWatch::poll`]
    /// (up until then).
    pub(crate) fn open(ifindex: u32) -> io::Result<LinkWatch> {
        // SAFETY: socket takes integers only; a non-negative result is a
        // new descriptor that nothing else owns.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: `fd` was just returned by socket and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid (pid 0: the kernel picks).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = RTMGRP_LINK;
        // SAFETY: `sa` is a valid sockaddr_nl of the length given, alive
        // for the call, which only reads it.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        let w = LinkWatch {
            fd,
            ifindex,
            up: true,
        };
        w.ask()?;
        Ok(w)
    }

    /// Asks the kernel for the interface's state (the answer is read by
    /// [`LinkWatch::poll`] like any change).
    fn ask(&self) -> io::Result<()> {
        let mut req = [0u8; NLMSG_HDR + IFINFO];
        let len = req.len() as u32;
        req[0..4].copy_from_slice(&len.to_ne_bytes());
        req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
        req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        req[NLMSG_HDR] = libc::AF_UNSPEC as u8;
        req[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&(self.ifindex as i32).to_ne_bytes());
        // SAFETY: `req` is alive for the call, which reads `req.len()` bytes.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads every message waiting (never blocks) and returns the link's
    /// state: up when the interface is up and has its carrier
    /// (IFF_UP and IFF_LOWER_UP).
    pub(crate) fn poll(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: `buf` is alive and writable for `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                    // Changes were lost (the socket overflowed): ask again.
                    let _ = self.ask();
                    continue;
                }
                // EAGAIN: nothing more.
                return self.up;
            }
            if n == 0 {
                return self.up;
            }
            if let Some(up) = link_state(&buf[..n as usize], self.ifindex) {
                self.up = up;
            }
        }
    }
}

/// The last state of interface `ifindex` that a batch of rtnetlink
/// messages tells, if any tells one.
fn link_state(mut b: &[u8], ifindex: u32) -> Option<bool> {
    let mut state = None;
    while b.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < NLMSG_HDR || len > b.len() {
            break;
        }
        let body = &b[NLMSG_HDR..len];
        if (ty == RTM_NEWLINK || ty == RTM_DELLINK) && body.len() >= IFINFO {
            let index = i32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
            let flags = u32::from_ne_bytes([body[8], body[9], body[10], body[11]]);
            if index as u32 == ifindex {
                let want = (libc::IFF_UP | libc::IFF_LOWER_UP) as u32;
                state = Some(ty == RTM_NEWLINK && flags & want == want);
            }
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, index: i32, flags: u32) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDR + IFINFO + 4];
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&ty.to_ne_bytes());
        m[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&index.to_ne_bytes());
        m[NLMSG_HDR + 8..NLMSG_HDR + 12].copy_from_slice(&flags.to_ne_bytes());
        m
    }

    #[test]
    fn the_last_message_for_the_interface_tells_its_state() {
        let up = (libc::IFF_UP | libc::IFF_LOWER_UP | libc::IFF_RUNNING) as u32;
        let no_carrier = libc::IFF_UP as u32;
        assert_eq!(link_state(&msg(RTM_NEWLINK, 3, up), 3), Some(true));
        assert_eq!(link_state(&msg(RTM_NEWLINK, 3, no_carrier), 3), Some(false));
        assert_eq!(link_state(&msg(RTM_NEWLINK, 4, no_carrier), 3), None);
        let mut both = msg(RTM_NEWLINK, 3, no_carrier);
        both.extend(msg(RTM_NEWLINK, 4, up));
        both.extend(msg(RTM_NEWLINK, 3, up));
        assert_eq!(link_state(&both, 3), Some(true));
        assert_eq!(link_state(&msg(RTM_DELLINK, 3, up), 3), Some(false));
        // Truncated or nonsense: nothing read, no panic.
        assert_eq!(link_state(&msg(RTM_NEWLINK, 3, up)[..20], 3), None);
        assert_eq!(link_state(&[0xff; 40], 3), None);
    }
}
