//! The real host's guest devices.

use crate::server::Devices;
use crate::types::{GuestSpec, VhostUserMode};
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
            GuestSpec::VhostUser {
                socket,
                mode,
                queues,
            } => {
                let opts = VhostUserOptions {
                    queue_pairs: usize::from(*queues),
                };
                match mode {
                    VhostUserMode::Server => VhostUser::listen(socket, &opts),
                    VhostUserMode::Client => VhostUser::connect(socket, &opts),
                }
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
            // The VMM's socket: never removed.
            GuestSpec::VhostUser {
                mode: VhostUserMode::Client,
                ..
            } => {}
            GuestSpec::VhostUser { socket, .. } => {
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

    fn guest_lost(&self, _port: &str, spec: &GuestSpec) -> Option<String> {
        let GuestSpec::Tap { name, netns } = spec else {
            return None;
        };
        // Only a namespace that is gone means the guest is: a TAP missing
        // from the namespace sluiced made it in is no sign of loss, as
        // operators (and tests/e2e) move a guest's TAP into the guest's own
        // namespace after sluiced made it.
        let ns = netns.as_deref()?;
        match std::fs::metadata(ns) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(format!(
                "TAP '{name}'{}: the namespace is gone",
                where_(Some(ns))
            )),
            _ => None,
        }
    }
}

/// What a guest device *is*, as opposed to how its path is spelled:
/// `/run/netns/X`, `/var/run/netns/X` and `/run/netns/../netns/X` are one
/// namespace, and two ports on one TAP would each take the other's
/// guest's frames as their own (a tenant-isolation failure).
///
/// A path is identified by the file system's `(st_dev, st_ino)` of what
/// it resolves to; a name that does not exist yet (a vhost-user socket
/// sluice is about to make, a namespace being recreated) by its
/// directory's `(st_dev, st_ino)` and its last component. A device is
/// the same as another when any of their keys match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceId {
    keys: Vec<DeviceKey>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DeviceKey {
    /// A TAP: its interface name inside the namespace at `ns`.
    Tap { ns: PathKey, name: String },
    /// A vhost-user socket.
    Socket(PathKey),
    /// A DPDK port, by its name.
    Dpdk(String),
}

/// One way of naming a file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PathKey {
    /// The file it resolves to.
    Inode(u64, u64),
    /// The directory it is in and its name there.
    Entry(u64, u64, std::ffi::OsString),
    /// Neither exists: the path as written, `.`/`..` resolved lexically.
    Lexical(PathBuf),
}

fn inode(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// Every key of a path: its own inode if it exists, its directory's entry
/// if the directory does, and the lexical path when neither does.
fn path_keys(p: &Path) -> Vec<PathKey> {
    let mut keys = Vec::new();
    if let Some((d, i)) = inode(p) {
        keys.push(PathKey::Inode(d, i));
    }
    if let (Some(dir), Some(file)) = (p.parent(), p.file_name()) {
        if let Some((d, i)) = inode(dir) {
            keys.push(PathKey::Entry(d, i, file.to_os_string()));
        }
    }
    if keys.is_empty() {
        keys.push(PathKey::Lexical(lexical(p)));
    }
    keys
}

/// `p` with `.` and `..` resolved as text (for paths that do not exist).
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The daemon's own network namespace (a TAP without `netns`).
const OWN_NETNS: &str = "/proc/self/ns/net";

impl DeviceId {
    /// The identity of a guest's device, `None` for no device.
    pub fn of(spec: &GuestSpec) -> Option<DeviceId> {
        let keys = match spec {
            GuestSpec::Tap { name, netns } => {
                let ns = netns.as_deref().unwrap_or(Path::new(OWN_NETNS));
                path_keys(ns)
                    .into_iter()
                    .map(|ns| DeviceKey::Tap {
                        ns,
                        name: name.clone(),
                    })
                    .collect()
            }
            GuestSpec::VhostUser { socket, .. } => path_keys(socket)
                .into_iter()
                .map(DeviceKey::Socket)
                .collect(),
            GuestSpec::Dpdk { port } => vec![DeviceKey::Dpdk(port.clone())],
            GuestSpec::None => return None,
        };
        Some(DeviceId { keys })
    }

    /// Whether the two are one device, however each was spelled.
    pub fn same(&self, other: &DeviceId) -> bool {
        self.keys.iter().any(|k| other.keys.contains(k))
    }
}

/// Whether two guests sit on one device (never for `none` guests).
pub fn same_device(a: &GuestSpec, b: &GuestSpec) -> bool {
    // Without a look at the file system where the answer is plain: a
    // TAP's identity holds its name, and devices of two kinds are two.
    // (A host creating its 1 000th TAP port compared it with the 999
    // others by two stat(2)s each: a quadratic sync.)
    if std::mem::discriminant(a) != std::mem::discriminant(b) {
        return false;
    }
    if let (GuestSpec::Tap { name: x, .. }, GuestSpec::Tap { name: y, .. }) = (a, b) {
        if x != y {
            return false;
        }
    }
    match (DeviceId::of(a), DeviceId::of(b)) {
        (Some(a), Some(b)) => a.same(&b),
        _ => false,
    }
}

/// Why a TAP name is not one the kernel keeps as given, or `None` if it
/// is. The kernel refuses an empty name, one of IFNAMSIZ (16) bytes or
/// more, `.`, `..`, and names with `/`, `:` or white space
/// (`dev_valid_name`); it takes a name with `%` as a template (`x%d`
/// becomes `x0`, a restart makes `x1` and orphans the guest). sluice
/// also refuses control and non-ASCII characters, which no tool shows
/// faithfully.
pub fn tap_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 15 {
        return Some(format!(
            "is {} bytes; an interface name is 1 to 15 (the kernel's IFNAMSIZ is 16 with the NUL)",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some("is a path segment the kernel refuses as an interface name".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '/' | ':' | '%'))
    {
        return Some(match c {
            '%' => {
                "has '%', which makes it a kernel name template ('x%d' becomes x0, x1, ...)".into()
            }
            '/' | ':' => format!("has '{c}', which the kernel refuses in interface names"),
            c => format!("has {c:?}; interface names here are printable ASCII without white space"),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(name: &str, netns: Option<&str>) -> GuestSpec {
        GuestSpec::Tap {
            name: name.into(),
            netns: netns.map(PathBuf::from),
        }
    }

    #[test]
    fn spellings_of_one_path_are_one_device() {
        let d = std::env::temp_dir().join(format!("sluice-devid-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("ns"), b"").unwrap();
        let p = |s: &str| d.join(s).to_string_lossy().into_owned();
        // An existing file, by its inode.
        assert!(same_device(
            &tap("t0", Some(&p("ns"))),
            &tap("t0", Some(&p("sub/../ns")))
        ));
        assert!(!same_device(
            &tap("t0", Some(&p("ns"))),
            &tap("t1", Some(&p("sub/../ns")))
        ));
        // A socket not made yet, by its directory's entry.
        let s = |s: &str| GuestSpec::VhostUser {
            socket: d.join(s),
            mode: VhostUserMode::Server,
            queues: 1,
        };
        assert!(same_device(&s("vm.sock"), &s("sub/../vm.sock")));
        assert!(same_device(&s("vm.sock"), &s("./vm.sock")));
        assert!(!same_device(&s("vm.sock"), &s("sub/vm.sock")));
        // Nothing of it exists: by the path, `..` resolved.
        assert!(same_device(
            &s("no/such/../x.sock"),
            &s("no/such/../other/../x.sock")
        ));
        assert!(!same_device(&GuestSpec::None, &GuestSpec::None));
        // The daemon's own namespace, spelled two ways.
        assert!(same_device(
            &tap("t0", None),
            &tap("t0", Some("/proc/self/ns/net"))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn names_the_kernel_would_change_or_refuse_are_named() {
        for ok in ["tap0", "vm-1_a.b", "x23456789012345"] {
            assert_eq!(tap_name_problem(ok), None, "{ok}");
        }
        for (bad, says) in [
            ("x%d", "template"),
            ("%", "template"),
            ("a/b", "'/'"),
            ("a:1", "':'"),
            ("a b", "white space"),
            ("a\tb", "white space"),
            (".", "path segment"),
            ("..", "path segment"),
            ("", "1 to 15"),
            ("x234567890123456", "1 to 15"),
            ("é", "printable ASCII"),
        ] {
            let p = tap_name_problem(bad).unwrap_or_default();
            assert!(p.contains(says), "{bad:?}: {p}");
        }
    }
}
