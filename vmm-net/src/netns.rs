//! Network namespaces, for running a backend inside one: a device is
//! created in (TAP) or looked up in (AF_PACKET) the namespace of the
//! thread that opens it, and stays there whichever thread uses it later.

use std::fs::File;
use std::io;
use std::path::Path;

/// Moves the calling thread, and only it, into the network namespace at
/// `path` (`/run/netns/NAME` for one made by `ip netns add NAME`, or
/// `/proc/PID/ns/net`). Sockets and devices the thread opens afterwards
/// belong to that namespace. The thread cannot go back unless it keeps a
/// handle on its old namespace: run this on a thread of its own.
pub fn enter(path: &Path) -> io::Result<()> {
    let f = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    crate::sys::netns::setns_net(&f)
}

/// Moves the calling thread, and only it, into a new network namespace
/// of its own (no name, nothing in it but `lo`) and brings `lo` up, so
/// that sockets the thread makes can reach each other on 127.0.0.1 and
/// nothing else can reach them. Needs CAP_SYS_ADMIN. Run it on a thread
/// of its own, as [`enter`].
pub fn enter_new() -> io::Result<()> {
    crate::sys::netns::unshare_net()?;
    crate::sys::netns::set_up("lo")
}
