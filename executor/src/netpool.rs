//! A pool of sandbox networks ([`crate::Network::Sandbox`]) that runs reuse one after
//! another, so a build of many `RUN` steps starts slirp4netns once per concurrent step
//! instead of once per step (starting it and waiting for it to configure the namespace
//! is the largest part of a trivial step's cost).
//!
//! Each pooled network is a network namespace made by a short-lived thread of the caller
//! (`unshare(CLONE_NEWNET)` affects only the calling thread), kept alive by a descriptor,
//! and served by one slirp4netns started with the same options as a per-run one
//! (`--disable-host-loopback`: no route to the host's 127.0.0.1). A run takes a network
//! with [`NetPool::lease`] and PID 1 joins it (`setns`) instead of making its own; the
//! lease goes back to the pool when dropped, after the run, so two runs at once never
//! share one. What a run could leave behind in the namespace is limited: its processes
//! all die with its pid namespace (and with them their sockets, abstract unix sockets
//! included), and without `CAP_NET_ADMIN` (Docker's default set has none) it cannot
//! change addresses, routes or firewall rules. A run that ends badly (killed, failed
//! setup) returns its namespace all the same: nothing of it survives the pid namespace.
//!
//! Only for root: a rootless sandbox makes its own user namespace, which has no right to
//! join a network namespace owned by the caller's. Without the pool (rootless, or the
//! pool failed to start a network), runs make their own namespace and slirp4netns.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};

use crate::slirp::Slirp;

/// One network namespace served by its slirp4netns.
#[derive(Debug)]
struct PooledNet {
    /// The namespace, kept alive by this descriptor (nsfs).
    ns: OwnedFd,
    slirp: Child,
    /// slirp4netns exits when this closes (also when the caller dies).
    exit: Option<OwnedFd>,
}

impl Drop for PooledNet {
    fn drop(&mut self) {
        drop(self.exit.take());
        let _ = self.slirp.wait();
    }
}

#[derive(Debug)]
struct Inner {
    slirp4netns: PathBuf,
    idle: Mutex<Vec<PooledNet>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut nets = std::mem::take(self.idle.get_mut().unwrap_or_else(|e| e.into_inner()));
        // Every slirp4netns told to exit at once, and reaped off the caller's path: each
        // takes tens of milliseconds to go, which one after another delayed the end of a
        // build by as many times that as it had networks.
        for n in &mut nets {
            drop(n.exit.take());
        }
        if !nets.is_empty() {
            std::thread::spawn(move || drop(nets));
        }
    }
}

/// Sandbox networks for runs of one caller, reused serially. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NetPool {
    inner: Arc<Inner>,
}

/// A network of the pool, held by one run; back to the pool when dropped.
#[derive(Debug)]
pub struct NetLease {
    net: Option<PooledNet>,
    pool: Arc<Inner>,
    path: PathBuf,
}

impl NetLease {
    /// The namespace's path for PID 1 to join (through this process's descriptor table,
    /// valid while the lease lives).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NetLease {
    fn drop(&mut self) {
        if let Some(net) = self.net.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(net);
        }
    }
}

impl NetPool {
    /// A pool serving networks with the `slirp4netns` binary; `None` when not root (see
    /// the module docs).
    pub fn new(slirp4netns: PathBuf) -> Option<NetPool> {
        crate::sys::running_as_root().then(|| NetPool {
            inner: Arc::new(Inner {
                slirp4netns,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// An idle network of the pool, or a new one. Blocks while a new one starts.
    pub fn lease(&self) -> io::Result<NetLease> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let net = match idle {
            Some(n) => n,
            None => start(&self.inner.slirp4netns)?,
        };
        use std::os::fd::AsRawFd;
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            net.ns.as_raw_fd()
        ));
        Ok(NetLease {
            net: Some(net),
            pool: self.inner.clone(),
            path,
        })
    }

    /// Networks waiting for a run.
    pub fn idle(&self) -> usize {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// A new namespace with slirp4netns configured in it (tap0, 10.0.2.100/24, its DNS
/// forwarder at 10.0.2.3), ready when this returns.
fn start(slirp4netns: &Path) -> io::Result<PooledNet> {
    let ns = crate::sys::new_network_namespace()?;
    let args: Vec<std::ffi::OsString> = vec![
        "--netns-type=path".into(),
        "/proc/self/fd/5".into(),
        "tap0".into(),
    ];
    let Slirp { child, exit } = Slirp::start(slirp4netns, &args, &[(&ns, 5)])?;
    Ok(PooledNet {
        ns,
        slirp: child,
        exit: Some(exit),
    })
}
