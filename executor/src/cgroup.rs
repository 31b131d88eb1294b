//! Resource limits for a sandbox (memory, CPUs, process count) through a cgroup made
//! for the run, on cgroup v2 (unified) or v1 (a directory per controller hierarchy).
//! The cgroup is created under the caller's own, joined by PID 1 before it forks, and
//! removed after the run.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The CFS period used for CPU limits (Docker's).
const CPU_PERIOD_US: u64 = 100_000;

/// Limits for one run; `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of memory.
    pub memory: Option<u64>,
    /// CPUs, as `docker run --cpus` (0.5 = half a CPU).
    pub cpus: Option<f64>,
    /// Processes and threads.
    pub pids: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none() && self.pids.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cpus must be positive, got {0}")]
    BadCpus(f64),
    #[error("no {0} cgroup controller on this host")]
    NoController(&'static str),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The CFS quota for `cpus`, in microseconds per [`CPU_PERIOD_US`].
fn cpu_quota(cpus: f64) -> Result<u64, CgroupError> {
    if !(cpus > 0.0 && cpus.is_finite()) {
        return Err(CgroupError::BadCpus(cpus));
    }
    Ok(((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000))
}

/// The files to write for `limits`, relative to each controller's directory, by
/// controller: `(controller, file, value)`.
fn settings(
    limits: &Limits,
    v2: bool,
) -> Result<Vec<(&'static str, &'static str, String)>, CgroupError> {
    let mut out = Vec::new();
    if let Some(m) = limits.memory {
        if v2 {
            out.push(("memory", "memory.max", m.to_string()));
            out.push(("memory", "memory.swap.max", "0".to_owned()));
        } else {
            out.push(("memory", "memory.limit_in_bytes", m.to_string()));
        }
    }
    if let Some(c) = limits.cpus {
        let quota = cpu_quota(c)?;
        if v2 {
            out.push(("cpu", "cpu.max", format!("{quota} {CPU_PERIOD_US}")));
        } else {
            out.push(("cpu", "cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
            out.push(("cpu", "cpu.cfs_quota_us", quota.to_string()));
        }
    }
    if let Some(p) = limits.pids {
        out.push(("pids", "pids.max", p.to_string()));
    }
    Ok(out)
}

/// This process's cgroup path in `controller`'s hierarchy (`""` for v2) from
/// `/proc/self/cgroup` text.
fn own_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_owned())
    })
}

/// A cgroup made for one run (one directory per v1 hierarchy); removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn unique_name() -> String {
    format!(
        "rbuild-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn read_proc_cgroup() -> Result<String, CgroupError> {
    let p = Path::new("/proc/self/cgroup");
    std::fs::read_to_string(p).map_err(io_err("read", p))
}

impl Cgroup {
    /// Creates a cgroup with `limits` under this process's own cgroup: on cgroup v2 when
    /// `/sys/fs/cgroup` is the unified hierarchy, else on the v1 hierarchies.
    pub fn create(limits: &Limits) -> Result<Self, CgroupError> {
        let root = Path::new(CGROUP_ROOT);
        if root.join("cgroup.controllers").exists() {
            return Self::create_v2(root, limits);
        }
        let proc_cgroup = read_proc_cgroup()?;
        let name = unique_name();
        let mut cg = Cgroup { dirs: Vec::new() };
        for (controller, file, value) in &settings(limits, false)? {
            let hierarchy = root.join(controller);
            let own = own_path(&proc_cgroup, controller)
                .filter(|_| hierarchy.is_dir())
                .ok_or(CgroupError::NoController(controller))?;
            let dir = hierarchy.join(own.trim_start_matches('/')).join(&name);
            if !cg.dirs.contains(&dir) {
                std::fs::create_dir(&dir).map_err(io_err("create", &dir))?;
                cg.dirs.push(dir.clone());
            }
            let p = dir.join(file);
            std::fs::write(&p, value).map_err(io_err("write", &p))?;
        }
        Ok(cg)
    }

    /// Creates a cgroup with `limits` in the cgroup v2 hierarchy mounted at `mount`,
    /// under this process's own cgroup (the `0::` line of `/proc/self/cgroup`). A
    /// controller the hierarchy does not offer (bound to a v1 hierarchy on a hybrid
    /// host, say) is a clear error, and nothing is left behind.
    pub fn create_v2(mount: &Path, limits: &Limits) -> Result<Self, CgroupError> {
        let settings = settings(limits, true)?;
        let own = own_path(&read_proc_cgroup()?, "").ok_or(CgroupError::NoController("unified"))?;
        let parent = mount.join(own.trim_start_matches('/'));
        let offered = parent.join("cgroup.controllers");
        let offered = std::fs::read_to_string(&offered).map_err(io_err("read", &offered))?;
        let mut wanted: Vec<&'static str> = settings.iter().map(|(c, _, _)| *c).collect();
        wanted.dedup();
        if let Some(missing) = wanted
            .iter()
            .find(|c| !offered.split_whitespace().any(|o| o == **c))
        {
            return Err(CgroupError::NoController(missing));
        }
        // Controllers must be enabled in the parent for the child to have them.
        if !wanted.is_empty() {
            let enable: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
            let control = parent.join("cgroup.subtree_control");
            std::fs::write(&control, enable.join(" ")).map_err(io_err("write", &control))?;
        }
        let dir = parent.join(unique_name());
        std::fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        // Removed on drop from here on, whatever fails next.
        let cg = Cgroup {
            dirs: vec![dir.clone()],
        };
        for (_, file, value) in &settings {
            let p = dir.join(file);
            // No swap accounting is not an error: memory.max still holds.
            if *file == "memory.swap.max" && !p.exists() {
                continue;
            }
            std::fs::write(&p, value).map_err(io_err("write", &p))?;
        }
        Ok(cg)
    }

    /// The `cgroup.procs` files PID 1 writes itself into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The cgroup directories (one per v1 hierarchy, one on v2).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Every process of the run is gone (the pid namespace died with PID 1): the
        // directories are empty and rmdir works.
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Moves the calling process into each cgroup (`cgroup.procs` takes "0" as "me").
pub fn join(procs_files: &[PathBuf]) -> Result<(), CgroupError> {
    for p in procs_files {
        std::fs::write(p, "0").map_err(io_err("join cgroup", p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_for_each_version() {
        let limits = Limits {
            memory: Some(64 << 20),
            cpus: Some(1.5),
            pids: Some(10),
        };
        let v1 = settings(&limits, false).unwrap();
        assert_eq!(
            v1,
            [
                ("memory", "memory.limit_in_bytes", "67108864".to_owned()),
                ("cpu", "cpu.cfs_period_us", "100000".to_owned()),
                ("cpu", "cpu.cfs_quota_us", "150000".to_owned()),
                ("pids", "pids.max", "10".to_owned()),
            ]
        );
        let v2 = settings(&limits, true).unwrap();
        assert_eq!(v2[2], ("cpu", "cpu.max", "150000 100000".to_owned()));
        assert!(settings(&Limits::default(), true).unwrap().is_empty());
    }

    #[test]
    fn bad_cpus_are_errors() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let limits = Limits {
                cpus: Some(bad),
                ..Limits::default()
            };
            assert!(matches!(
                settings(&limits, false),
                Err(CgroupError::BadCpus(_))
            ));
        }
        // Tiny values get the kernel's minimum quota rather than an error.
        assert_eq!(cpu_quota(0.001).unwrap(), 1000);
    }

    #[test]
    fn own_cgroup_paths() {
        let text = "9:name=systemd:/\n4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/unified/x\n";
        assert_eq!(own_path(text, "memory").as_deref(), Some("/a/b"));
        assert_eq!(own_path(text, "cpu").as_deref(), Some("/c"));
        assert_eq!(own_path(text, "").as_deref(), Some("/unified/x"));
        assert_eq!(own_path(text, "pids"), None);
    }
}
