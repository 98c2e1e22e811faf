//! Network namespaces: moving the calling thread into one.

use super::cvt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Moves the calling thread (only it) into the network namespace `ns`
/// (an open `/run/netns/NAME` or `/proc/PID/ns/net`).
pub(crate) fn setns_net(ns: &File) -> io::Result<()> {
    // SAFETY: setns only reads its two integer arguments; the descriptor
    // is owned by `ns`, open for the call. Changing the network namespace
    // of one thread is allowed in a multi-threaded process.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Moves the calling thread (only it) into a new, empty network
/// namespace.
pub(crate) fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare takes one integer flag. CLONE_NEWNET alone changes
    // only the calling thread and is allowed in a multi-threaded process.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Sets IFF_UP on the interface `name` of the calling thread's network
/// namespace. `name` must be shorter than IFNAMSIZ.
pub(crate) fn set_up(name: &str) -> io::Result<()> {
    use super::tap::IfReqFlags;
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 40 - libc::IFNAMSIZ - 2],
    };
    let n = name.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write a `struct
    // ifreq`; `req` has its size and the layout of the members they use
    // (name, then the flags of the union), is NUL-terminated, and
    // outlives both calls. The socket is open for them.
    unsafe {
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.flags |= libc::IFF_UP as libc::c_short;
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req))?;
    }
    Ok(())
}
