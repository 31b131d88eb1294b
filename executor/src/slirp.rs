//! slirp4netns, the user-space network stack behind [`crate::Network::Sandbox`]: one
//! process serving one network namespace from the host side (a tap device with NAT to the
//! outside, `--disable-host-loopback`: no route to the host's 127.0.0.1). Started for one
//! run by the sandbox helper, or once per pooled network by [`crate::netpool`].

use std::ffi::OsString;
use std::io::{self, Read, Seek};
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::sys::launch;

/// A running slirp4netns, ready (it has configured the namespace).
#[derive(Debug)]
pub(crate) struct Slirp {
    pub(crate) child: Child,
    /// slirp4netns exits when this closes (also when its starter dies).
    pub(crate) exit: OwnedFd,
}

impl Slirp {
    /// Starts `path` with the common options, then `target` (how it finds the namespace,
    /// then the tap device's name), passing `extra` descriptors at the given numbers (from
    /// 5 up: 3 and 4 are its ready and exit pipes); returns once it reports ready.
    pub(crate) fn start(
        path: &Path,
        target: &[OsString],
        extra: &[(&OwnedFd, RawFd)],
    ) -> io::Result<Slirp> {
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (exit_r, exit_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let mut cmd = Command::new(path);
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--ready-fd=3",
            "--exit-fd=4",
        ])
        .args(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        // Its complaints, for the error message if it fails (a file, which never blocks it
        // the way a full pipe would).
        let mut log = tempfile::tempfile()?;
        cmd.stderr(log.try_clone()?);
        let mut fds = vec![(&ready_w, 3), (&exit_r, 4)];
        fds.extend_from_slice(extra);
        let keep = launch::inherit_fds(&mut cmd, &fds)?;
        let mut child = cmd.spawn()?;
        drop((keep, ready_w, exit_r));
        let mut ready = [0u8; 1];
        if std::fs::File::from(ready_r).read(&mut ready)? != 1 {
            let status = child.wait()?;
            let mut text = String::new();
            log.seek(io::SeekFrom::Start(0))?;
            let _ = (&mut log).take(4096).read_to_string(&mut text);
            return Err(io::Error::other(format!(
                "{} did not start ({status}): {}",
                path.display(),
                text.trim().replace('\n', "; ")
            )));
        }
        Ok(Slirp {
            child,
            exit: exit_w,
        })
    }

    /// Tells it to exit and reaps it.
    pub(crate) fn stop(self) {
        drop(self.exit);
        let mut child = self.child;
        let _ = child.wait();
    }
}
