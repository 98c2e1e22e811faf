//! A network namespace of sluiced's own, holding nothing but `lo`: a
//! socket made inside it can only ever talk to other sockets made inside
//! it, because a socket keeps the namespace it was created in whichever
//! thread later uses it. Another process reaches the namespace only by
//! entering it through `/proc/PID/task/TID/ns/net` (it has no name under
//! `/run/netns`), which needs CAP_SYS_ADMIN and ptrace rights over
//! sluiced: privileges that could take sluiced apart anyway.
//!
//! One thread lives in the namespace for the life of the [`PrivateNet`]
//! and makes sockets there on request; the rest of the process never
//! leaves the host's namespace.

use std::io;
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// The thread inside the private namespace.
pub struct PrivateNet {
    jobs: mpsc::Sender<Job>,
}

impl PrivateNet {
    /// Makes a new network namespace with `lo` up, on a thread of its
    /// own. Fails (EPERM) without CAP_SYS_ADMIN.
    pub fn new() -> io::Result<PrivateNet> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("sluice-private-net".into())
            .spawn(move || {
                let r = enter_new_namespace();
                let ok = r.is_ok();
                let _ = ready_tx.send(r);
                if ok {
                    // Until the PrivateNet is dropped.
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                }
            })?;
        ready
            .recv()
            .map_err(|_| io::Error::other("the private namespace's thread died"))??;
        Ok(PrivateNet { jobs })
    }

    /// Runs `f` on the thread inside the namespace and waits for it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Box::new(move || {
            let _ = tx.send(f());
        }))?;
        rx.recv().map_err(|_| gone())
    }

    /// A TCP socket (not yet bound or connected) in the namespace.
    pub async fn tcp_socket(&self, ipv6: bool) -> io::Result<tokio::net::TcpSocket> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Box::new(move || {
            // Made here, so it belongs to this thread's namespace.
            let s = if ipv6 {
                tokio::net::TcpSocket::new_v6()
            } else {
                tokio::net::TcpSocket::new_v4()
            };
            let _ = tx.send(s);
        }))?;
        rx.await.map_err(|_| gone())?
    }

    fn send(&self, job: Job) -> io::Result<()> {
        self.jobs.send(job).map_err(|_| gone())
    }
}

fn gone() -> io::Error {
    io::Error::other("the private namespace's thread is gone")
}

fn enter_new_namespace() -> io::Result<()> {
    vmm_net::netns::enter_new()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root only (CAP_SYS_ADMIN); skipped otherwise, failed under CI.
    fn net() -> Option<PrivateNet> {
        match PrivateNet::new() {
            Ok(n) => Some(n),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: no private namespace ({e}); needs root");
                None
            }
            Err(e) => panic!("CI is set and no private namespace: {e}"),
        }
    }

    #[test]
    fn a_listener_in_the_namespace_is_reachable_from_it_and_not_from_the_host() {
        let Some(n) = net() else { return };
        let l = n
            .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap()
            .unwrap();
        let addr = l.local_addr().unwrap();
        // From the host's namespace: nothing listens there.
        let host = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1));
        assert!(host.is_err(), "reached {addr} from the host namespace");
        // From a socket made inside, whichever thread connects it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = n.tcp_socket(false).await.unwrap();
            s.connect(addr).await.unwrap();
        });
        l.accept().unwrap();
    }
}
