//! The real host's guest devices.

use crate::server::Devices;
use crate::types::GuestSpec;
use vmm_net::backend::Backend;
use vmm_net::tap::{Tap, TapOptions};

/// TAP guests (persistent, so a guest's namespace keeps its interface
/// while sluiced restarts and the restarted daemon re-attaches to it).
pub struct HostDevices;

impl Devices for HostDevices {
    fn open_guest(&self, _port: &str, spec: &GuestSpec) -> Result<Box<dyn Backend>, String> {
        match spec {
            GuestSpec::Tap { name } => {
                let opts = TapOptions {
                    queues: 1,
                    persist: true,
                };
                let mut qs = Tap::open_with(name, &opts)
                    .map_err(|e| format!("opening TAP '{name}': {e}"))?;
                match qs.pop() {
                    Some(q) => Ok(Box::new(q)),
                    None => Err(format!("opening TAP '{name}': no queue")),
                }
            }
            GuestSpec::VhostUser { socket } => Err(format!(
                "vhost-user guests ({}) are not supported by this build yet; use a TAP",
                socket.display()
            )),
            GuestSpec::None => Ok(Box::new(vmm_net::backend::Null)),
        }
    }

    fn remove_guest(&self, _port: &str, spec: &GuestSpec) {
        if let GuestSpec::Tap { name } = spec {
            let _ = Tap::remove(name);
        }
    }
}
