//! What the caller tells the sandbox init (over the inherited socket), and what the init
//! reports back. Both sides are this crate, so the format is private and may change.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::mounts::CacheMount;
use crate::sys::{Capability, Overlay, Rlimit};

/// Docker's default capability set (moby `oci/caps/defaults.go`); everything else is dropped.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// The `PATH` used to find the command when its environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which network the sandbox sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Network {
    /// Its own network namespace with only loopback, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Its own network namespace with outbound access through a user-space network
    /// stack (slirp4netns) that cannot reach the host's loopback services: BuildKit's
    /// default. Needs `slirp4netns` on the host.
    Sandbox,
}

/// The root filesystem of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rootfs {
    /// An existing directory (for example a mounted snapshot), bind-mounted onto itself.
    Dir(PathBuf),
    /// An overlay mounted on `target` inside the sandbox's own mount namespace, so it
    /// disappears with the sandbox whatever happens to the caller.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: Option<(PathBuf, PathBuf)>,
        target: PathBuf,
    },
}

impl Rootfs {
    /// The host path the rootfs is (or will be) mounted at.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Rootfs::Dir(p) => p,
            Rootfs::Overlay { target, .. } => target,
        }
    }

    pub(crate) fn overlay(&self) -> Option<Overlay> {
        match self {
            Rootfs::Dir(_) => None,
            Rootfs::Overlay { lowers, upper, .. } => Some(Overlay {
                lowers: lowers.clone(),
                upper: upper.clone(),
                volatile: false,
            }),
        }
    }
}

/// What an extra mount shows at its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host file, directory or socket (recursively bound), read-only unless `readonly`
    /// is false (`-v`, `RUN --mount=type=bind|cache|secret|ssh`).
    Bind { source: PathBuf, readonly: bool },
    /// A host directory seen writable, every change going to a scratch overlay upper that
    /// is thrown away after the run: `RUN --mount=type=bind,rw`.
    BindDiscard { source: PathBuf },
    /// A fresh tmpfs; `size` in bytes.
    Tmpfs { size: Option<u64> },
    /// A persistent cache directory (`RUN --mount=type=cache`), taken for the run as its
    /// sharing mode says and bind-mounted.
    Cache(CacheMount),
    /// A secret (`RUN --mount=type=secret`): the host file `source` is copied into a
    /// tmpfs private to the sandbox and bound read-only at the target with `uid`, `gid`
    /// and `mode`. Neither the copy nor the target's stub ever reach the rootfs's layer.
    Secret {
        source: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    /// An SSH agent (`RUN --mount=type=ssh`): a socket at the target, owned by
    /// `uid:gid` with `mode`, that forwards to the host agent socket `agent` (usually
    /// `$SSH_AUTH_SOCK`). The first one also sets `SSH_AUTH_SOCK` unless the env has it.
    Ssh {
        agent: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

/// A mount added inside the sandbox at `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraMount {
    /// Path inside the sandbox; created (and removed after the run) if missing.
    pub target: String,
    pub kind: MountKind,
}

/// Everything the init needs, resolved by the caller except the user (which must be
/// looked up in the rootfs, from inside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitSpec {
    pub rootfs: Rootfs,
    pub argv: Vec<String>,
    /// `KEY=value` strings.
    pub env: Vec<String>,
    pub cwd: String,
    /// A `USER` value: `name`, `uid`, `name:group`, `uid:gid`, or empty for root.
    pub user: String,
    pub hostname: String,
    pub network: Network,
    /// Generated files as `(path inside, content)` (`/etc/hosts`...): written by PID 1
    /// on the sandbox's own `/dev` tmpfs and bound read-only at the path, so they never
    /// touch the host's disk or a layer.
    pub etc_files: Vec<(String, String)>,
    /// The slirp4netns binary, for [`Network::Sandbox`].
    pub slirp4netns: Option<PathBuf>,
    /// [`Network::Sandbox`] already served: PID 1 joins this network namespace (a
    /// [`crate::NetPool`] lease) instead of making one, and no slirp4netns is started.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    pub mounts: Vec<ExtraMount>,
    /// Rootless: the caller's `(uid, gid)`, mapped to root in a new user namespace.
    pub rootless: Option<(u32, u32)>,
    /// `cgroup.procs` files PID 1 joins before anything else (resource limits).
    pub cgroup_procs: Vec<PathBuf>,
    /// A host directory for throwaway overlay uppers ([`MountKind::BindDiscard`]) and
    /// secret copies; empty when no mount needs one.
    pub scratch: PathBuf,
    pub rlimits: Vec<Rlimit>,
    /// Give the command a new pseudo-terminal of the sandbox's devpts as its stdio and
    /// controlling terminal; PID 1 relays it to and from its own stdin and stdout.
    #[serde(default)]
    pub tty: bool,
    /// Rootless with subordinate ids: the ranges `newuidmap`/`newgidmap` map to ids 1
    /// and up, so users other than root exist inside.
    #[serde(default)]
    pub subids: Option<SubIds>,
}

impl InitSpec {
    /// Whether the helper starts slirp4netns for this run (a sandbox network that is not
    /// a pooled one).
    pub fn starts_slirp(&self) -> bool {
        self.network == Network::Sandbox && self.netns.is_none()
    }
}

/// The caller's subordinate id ranges (`/etc/subuid`, `/etc/subgid`) and the setuid
/// helpers that may map them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubIds {
    pub uid_start: u32,
    pub uid_count: u32,
    pub gid_start: u32,
    pub gid_count: u32,
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
}

impl SubIds {
    /// The ranges of the user `(uid, name)` in `/etc/subuid`-style texts (`name:start:count`
    /// or `uid:start:count` a line; the first match counts).
    pub fn parse(
        uid: u32,
        name: Option<&str>,
        subuid: &str,
        subgid: &str,
    ) -> Option<(u32, u32, u32, u32)> {
        let find = |text: &str| {
            text.lines().find_map(|l| {
                let mut f = l.trim().split(':');
                let (who, start, count) = (f.next()?, f.next()?, f.next()?);
                if who != uid.to_string() && Some(who) != name {
                    return None;
                }
                let (start, count) = (start.parse().ok()?, count.parse::<u32>().ok()?);
                (count > 0).then_some((start, count))
            })
        };
        let (us, uc) = find(subuid)?;
        let (gs, gc) = find(subgid)?;
        Some((us, uc, gs, gc))
    }
}

/// A report from the sandbox to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The container could not be set up.
    SetupFailed(String),
    /// The command could not be executed; the init exits with `code` (126 or 127).
    ExecFailed { message: String, code: i32 },
    /// The command ended.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// Largest spec accepted from the socket (a guard against garbage, not a real limit).
const MAX_SPEC: u32 = 64 << 20;

pub(crate) fn write_spec(w: &mut impl Write, spec: &InitSpec) -> io::Result<()> {
    let data = serde_json::to_vec(spec).map_err(io::Error::other)?;
    let len = u32::try_from(data.len()).map_err(io::Error::other)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&data)
}

pub(crate) fn read_spec(r: &mut impl Read) -> io::Result<InitSpec> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_SPEC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "spec too large"));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Messages are JSON lines (serde_json never emits a raw newline).
pub(crate) fn write_message(w: &mut impl Write, msg: &Message) -> io::Result<()> {
    let mut data = serde_json::to_vec(msg).map_err(io::Error::other)?;
    data.push(b'\n');
    w.write_all(&data)
}

pub(crate) fn parse_message(line: &[u8]) -> io::Result<Message> {
    serde_json::from_slice(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips() {
        let spec = InitSpec {
            rootfs: Rootfs::Dir("/r".into()),
            argv: vec!["sh".into(), "-c".into(), "echo\nhi".into()],
            env: vec!["A=b".into()],
            cwd: "/w".into(),
            user: "app:staff".into(),
            hostname: "h".into(),
            network: Network::Host,
            etc_files: vec![("/etc/hosts".into(), "127.0.0.1\tlocalhost\n".into())],
            slirp4netns: None,
            netns: Some("/proc/1/fd/7".into()),
            mounts: vec![ExtraMount {
                target: "/cache".into(),
                kind: MountKind::Tmpfs {
                    size: Some(1 << 20),
                },
            }],
            rootless: Some((1000, 1000)),
            cgroup_procs: vec!["/sys/fs/cgroup/x/cgroup.procs".into()],
            scratch: "/tmp/s".into(),
            rlimits: vec![Rlimit {
                resource: 7,
                soft: 1,
                hard: 2,
            }],
            tty: true,
            subids: None,
        };
        let mut buf = Vec::new();
        write_spec(&mut buf, &spec).unwrap();
        assert_eq!(read_spec(&mut buf.as_slice()).unwrap(), spec);
    }

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let subuid = "other:1:2\nbob:100000:65536\n";
        let subgid = "# c\n1000:200000:10\n";
        assert_eq!(
            SubIds::parse(1000, Some("bob"), subuid, subgid),
            Some((100000, 65536, 200000, 10))
        );
        assert_eq!(SubIds::parse(1001, Some("eve"), subuid, subgid), None);
        assert_eq!(SubIds::parse(1000, Some("bob"), subuid, ""), None);
    }

    #[test]
    fn truncated_or_huge_spec_is_an_error() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&10u32.to_le_bytes());
        buf.extend_from_slice(b"{}");
        assert!(read_spec(&mut buf.as_slice()).is_err());
        let huge = (MAX_SPEC + 1).to_le_bytes();
        assert!(read_spec(&mut huge.as_slice()).is_err());
    }

    #[test]
    fn message_is_one_line() {
        let msg = Message::SetupFailed("a\nb".into());
        let mut buf = Vec::new();
        write_message(&mut buf, &msg).unwrap();
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(parse_message(&buf[..buf.len() - 1]).unwrap(), msg);
    }
}
