//! The real host's guest devices.

use crate::server::Devices;
use crate::types::GuestSpec;
use std::io;
use std::path::{Path, PathBuf};
use vmm_net::backend::Backend;
use vmm_net::tap::{Tap, TapOptions};

/// TAP guests (persistent, so a guest's namespace keeps its interface
/// while sluiced restarts and the restarted daemon re-attaches to it).
pub struct HostDevices;

/// Runs `f` in the network namespace at `netns` (on a short-lived thread
/// that enters it, so the daemon's own threads stay where they are), or
/// here when there is none. What `f` opens stays in that namespace.
fn in_netns<T: Send + 'static>(
    netns: Option<&Path>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let Some(ns) = netns else {
        return f();
    };
    let ns: PathBuf = ns.to_path_buf();
    std::thread::Builder::new()
        .name("sluice-netns".into())
        .spawn(move || {
            vmm_net::netns::enter(&ns)?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

fn where_(netns: Option<&Path>) -> String {
    netns.map_or(String::new(), |p| format!(" in {}", p.display()))
}

impl Devices for HostDevices {
    fn open_guest(&self, _port: &str, spec: &GuestSpec) -> Result<Box<dyn Backend>, String> {
        match spec {
            GuestSpec::Tap { name, netns } => {
                let opts = TapOptions {
                    queues: 1,
                    persist: true,
                };
                let n = name.clone();
                let mut qs = in_netns(netns.as_deref(), move || Tap::open_with(&n, &opts))
                    .map_err(|e| {
                        format!("opening TAP '{name}'{}: {e}", where_(netns.as_deref()))
                    })?;
                match qs.pop() {
                    Some(q) => Ok(Box::new(q)),
                    None => Err(format!("opening TAP '{name}': no queue")),
                }
            }
            GuestSpec::VhostUser { socket } => Err(format!(
                "vhost-user guests ({}) are not supported by this build yet; use a TAP",
                socket.display()
            )),
            GuestSpec::Dpdk { port } => crate::dpdk::open_guest(port),
            GuestSpec::None => Ok(Box::new(vmm_net::backend::Null)),
        }
    }

    fn remove_guest(&self, _port: &str, spec: &GuestSpec) {
        if let GuestSpec::Tap { name, netns } = spec {
            let n = name.clone();
            // A namespace that is gone took its TAP with it.
            let _ = in_netns(netns.as_deref(), move || Tap::remove(&n));
        }
    }
}
