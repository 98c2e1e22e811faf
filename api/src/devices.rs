//! The real host's guest devices.

use crate::server::Devices;
use crate::types::GuestSpec;
use std::io;
use std::path::{Path, PathBuf};
use vmm_net::backend::Backend;
use vmm_net::tap::{Tap, TapOptions};
use vmm_net::vhost_user::{VhostUser, VhostUserOptions};

/// TAP guests (persistent, so a guest's namespace keeps its interface
/// while sluiced restarts and the restarted daemon re-attaches to it) and
/// vhost-user guests (sluice listens on the socket; the VMM connects, and
/// reconnects after either side restarts).
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
                    ..TapOptions::default()
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
            GuestSpec::VhostUser { socket } => {
                VhostUser::listen(socket, &VhostUserOptions::default())
                    .map(|b| Box::new(b) as Box<dyn Backend>)
                    .map_err(|e| {
                        // The backend's own refusals name the path already.
                        let m = e.to_string();
                        if m.contains(&*socket.to_string_lossy()) {
                            m
                        } else {
                            format!("vhost-user socket {}: {m}", socket.display())
                        }
                    })
            }
            GuestSpec::Dpdk { port } => crate::dpdk::open_guest(port),
            GuestSpec::None => Ok(Box::new(vmm_net::backend::Null)),
        }
    }

    fn remove_guest(&self, _port: &str, spec: &GuestSpec) {
        match spec {
            GuestSpec::Tap { name, netns } => {
                let n = name.clone();
                // A namespace that is gone took its TAP with it.
                let _ = in_netns(netns.as_deref(), move || Tap::remove(&n));
            }
            GuestSpec::VhostUser { socket } => {
                // The backend removes its socket when the worker drops
                // it; this catches one left behind, and never removes
                // anything that is not a socket.
                use std::os::unix::fs::FileTypeExt;
                if std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket()) {
                    let _ = std::fs::remove_file(socket);
                }
            }
            GuestSpec::Dpdk { .. } | GuestSpec::None => {}
        }
    }
}
