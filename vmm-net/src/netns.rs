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
