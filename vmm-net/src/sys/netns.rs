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
