//! Resource limits on cgroup v2, through whichever cgroup2 hierarchy the host mounts
//! (`/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a hybrid one).

use std::path::Path;

use rbuild_executor::cgroup::{Cgroup, CgroupError, Limits};

fn own_v2_dir(mount: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line in /proc/self/cgroup");
    mount.join(own.trim_start_matches('/'))
}

fn ours(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("rbuild-{}-", std::process::id())))
        .collect()
}

#[test]
fn v2_limits_are_written_or_missing_controllers_refused_cleanly() {
    if !rbuild_executor::sys::running_as_root() {
        eprintln!("skipping: cgroup tests need root");
        return;
    }
    let Some(mount) = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .map(Path::new)
        .into_iter()
        .find(|m| m.join("cgroup.controllers").exists())
    else {
        eprintln!("skipping: no cgroup2 hierarchy mounted");
        return;
    };
    let parent = own_v2_dir(mount);
    let offered = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap();
    let limits = Limits {
        memory: Some(64 << 20),
        cpus: Some(0.5),
        pids: Some(20),
    };
    match Cgroup::create_v2(mount, &limits) {
        Ok(cg) => {
            let dir = cg.dirs()[0].clone();
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
            assert_eq!(read("memory.max").trim(), "67108864");
            assert_eq!(read("cpu.max").trim(), "50000 100000");
            assert_eq!(read("pids.max").trim(), "20");
            drop(cg);
            assert!(!dir.exists());
        }
        Err(CgroupError::NoController(c)) => {
            // A hybrid host: the controller is bound to its v1 hierarchy.
            assert!(
                !offered.split_whitespace().any(|o| o == c),
                "{c} is offered: {offered}"
            );
            eprintln!(
                "cgroup v2 at {} offers only {:?}: {c} is bound to cgroup v1 here",
                mount.display(),
                offered.trim()
            );
        }
        Err(e) => panic!("{e}"),
    }
    assert!(ours(&parent).is_empty(), "{:?}", ours(&parent));
}
