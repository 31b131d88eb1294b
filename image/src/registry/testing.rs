//! Test fixture (feature `testing`): Debian's `docker-registry` (distribution v2) on a free
//! 127.0.0.1 port, with filesystem storage in a temp dir, plain or behind htpasswd basic
//! auth. Stopped and cleaned up on drop.
//!
//! The binary is installed with `apt-get` when missing; if that fails, [`TestRegistry`]'s
//! constructors return [`TestingError::Missing`] so tests fail loudly instead of passing.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `docker-registry` package puts the binary.
pub const BINARY: &str = "/usr/bin/docker-registry";
/// The username of [`TestRegistry::start_with_auth`].
pub const USER: &str = "rbuild";
/// The password of [`TestRegistry::start_with_auth`].
pub const PASSWORD: &str = "s3cret-pw";

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors from starting the fixture.
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    #[error(
        "{BINARY} is missing and `apt-get install -y docker-registry` did not provide it \
         ({detail}); install Debian's docker-registry package to run the registry tests"
    )]
    Missing { detail: String },
    #[error("cannot prepare the registry's directory")]
    Setup(#[source] io::Error),
    #[error("cannot hash the htpasswd password: {0}")]
    Htpasswd(String),
    #[error("cannot start {BINARY}")]
    Spawn(#[source] io::Error),
    #[error("docker-registry did not become ready: {0}")]
    NotReady(String),
}

/// A running registry; killed on drop.
#[derive(Debug)]
pub struct TestRegistry {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// A registry without authentication.
    pub fn start() -> Result<TestRegistry, TestingError> {
        TestRegistry::launch(false)
    }

    /// A registry requiring basic auth as [`USER`] / [`PASSWORD`].
    pub fn start_with_auth() -> Result<TestRegistry, TestingError> {
        TestRegistry::launch(true)
    }

    /// `127.0.0.1:<port>`, as used in references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry's storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn launch(auth: bool) -> Result<TestRegistry, TestingError> {
        let binary = ensure_binary()?;
        // A port picked by binding :0 may be taken by someone else before the registry
        // binds it; try a few.
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().map_err(TestingError::Setup)?;
            let port = free_port().map_err(TestingError::Setup)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let config = write_config(dir.path(), addr, auth)?;
            let log = std::fs::File::create(dir.path().join("registry.log"))
                .map_err(TestingError::Setup)?;
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(TestingError::Setup)?)
                .stderr(log)
                .spawn()
                .map_err(TestingError::Spawn)?;
            let mut reg = TestRegistry { child, addr, dir };
            match reg.wait_ready() {
                Ok(()) => return Ok(reg),
                Err(e) => last_err = e,
            }
        }
        Err(TestingError::NotReady(last_err))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
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
        Err(format!("no answer on /v2/ within {READY_TIMEOUT:?}"))
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry binary, installed with apt if missing.
fn ensure_binary() -> Result<PathBuf, TestingError> {
    // Tests run in parallel threads; one apt-get at a time.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let path = PathBuf::from(BINARY);
    if path.exists() {
        return Ok(path);
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "docker-registry"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if path.exists() {
        return Ok(path);
    }
    Err(TestingError::Missing {
        detail: match status {
            Ok(s) => format!("apt-get {s}"),
            Err(e) => format!("cannot run apt-get: {e}"),
        },
    })
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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

fn write_config(dir: &Path, addr: SocketAddr, auth: bool) -> Result<PathBuf, TestingError> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(TestingError::Setup)?;
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: rbuild-test-secret\n",
        data.display()
    );
    if auth {
        // Cost 4, the minimum: the fixture hashes once per registry and verifies per request.
        let hash = bcrypt::hash(PASSWORD, 4).map_err(|e| TestingError::Htpasswd(e.to_string()))?;
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).map_err(TestingError::Setup)?;
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    let path = dir.join("config.yml");
    std::fs::write(&path, yaml).map_err(TestingError::Setup)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        let reg = TestRegistry::start().expect("registry fixture");
        assert_eq!(probe(reg.addr()), Some(200));
        let addr = reg.addr();
        assert!(reg.storage().is_dir());
        drop(reg);
        assert_eq!(probe(addr), None);

        let reg = TestRegistry::start_with_auth().expect("registry fixture");
        assert_eq!(probe(reg.addr()), Some(401));
    }
}
