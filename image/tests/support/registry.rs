//! Test fixture: Debian's `docker-registry` (distribution v2) on a free 127.0.0.1 port,
//! with filesystem storage in a temp dir, plain or behind htpasswd basic auth. Stopped and
//! cleaned up on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/docker-registry";

/// A running registry; killed on drop.
pub struct TestRegistry {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// The username and password of [`TestRegistry::start_with_auth`].
pub const USER: &str = "rbuild";
pub const PASSWORD: &str = "s3cret-pw";

impl TestRegistry {
    /// A registry without authentication.
    pub fn start() -> TestRegistry {
        TestRegistry::launch(false)
    }

    /// A registry requiring basic auth as [`USER`] / [`PASSWORD`].
    pub fn start_with_auth() -> TestRegistry {
        TestRegistry::launch(true)
    }

    /// `127.0.0.1:<port>`, as used in references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn launch(auth: bool) -> TestRegistry {
        let binary = ensure_binary();
        // A port picked by binding :0 may be taken by someone else before the registry
        // binds it; try a few.
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir for registry");
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let config = write_config(dir.path(), addr, auth);
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut reg = TestRegistry { child, addr, dir };
            match reg.wait_ready() {
                Ok(()) => return reg,
                Err(e) => last_err = e,
            }
        }
        panic!("docker-registry did not start: {last_err}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if let Some(status) = probe(self.addr)
                && (status == 200 || status == 401)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("no answer on /v2/ within 30 s".to_owned())
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry binary, installed with apt if missing. Panics with a clear message when it
/// cannot be had: these tests must not pass without it.
fn ensure_binary() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let path = PathBuf::from(BINARY);
    if path.exists() {
        return path;
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "docker-registry"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
    if path.exists() {
        return path;
    }
    panic!(
        "{BINARY} is missing and `apt-get install -y docker-registry` did not provide it \
         ({status:?}); install Debian's docker-registry package to run the registry tests"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The status code of `GET /v2/`, if the server answers.
fn probe(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

fn write_config(dir: &Path, addr: SocketAddr, auth: bool) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: rbuild-test-secret\n",
        data.display()
    );
    if auth {
        let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).unwrap();
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    let path = dir.join("config.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}
