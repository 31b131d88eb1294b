//! Docker credential helpers: `docker-credential-<name> get|store|erase`, speaking JSON on
//! stdin/stdout (the protocol of docker/docker-credential-helpers).

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::{AuthError, Credentials};

/// The username helpers return when the secret is an identity (refresh) token.
const TOKEN_USERNAME: &str = "<token>";

/// What a helper's `get` prints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct HelperCredentials {
    #[serde(rename = "ServerURL", default)]
    pub server_url: String,
    #[serde(rename = "Username", default)]
    pub username: String,
    #[serde(rename = "Secret", default)]
    pub secret: String,
}

impl HelperCredentials {
    pub fn into_credentials(self) -> Credentials {
        if self.username == TOKEN_USERNAME {
            Credentials::IdentityToken(self.secret)
        } else {
            Credentials::Basic {
                username: self.username,
                password: self.secret,
            }
        }
    }
}

fn program(name: &str) -> OsString {
    OsString::from(format!("docker-credential-{name}"))
}

/// `get`: `Ok(None)` when the helper has no credentials for `server`.
pub fn get(name: &str, server: &str) -> Result<Option<HelperCredentials>, AuthError> {
    get_with(&program(name), server)
}

pub(crate) fn get_with(
    program: &std::ffi::OsStr,
    server: &str,
) -> Result<Option<HelperCredentials>, AuthError> {
    let out = run(program, "get", server.as_bytes())?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        // The protocol's "not found" answer is this message with a non-zero exit.
        if msg.contains("credentials not found") || err.contains("credentials not found") {
            return Ok(None);
        }
        return Err(AuthError::Helper {
            program: program.to_string_lossy().into_owned(),
            message: if msg.is_empty() { err } else { msg },
        });
    }
    let creds: HelperCredentials =
        serde_json::from_slice(&out.stdout).map_err(|e| AuthError::Helper {
            program: program.to_string_lossy().into_owned(),
            message: format!("invalid output: {e}"),
        })?;
    if creds.username.is_empty() && creds.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(creds))
}

/// `store`: saves a username and secret for `server`.
pub fn store(name: &str, server: &str, username: &str, secret: &str) -> Result<(), AuthError> {
    let program = program(name);
    let input = serde_json::to_vec(&HelperCredentials {
        server_url: server.to_owned(),
        username: username.to_owned(),
        secret: secret.to_owned(),
    })
    .map_err(|e| AuthError::Helper {
        program: program.to_string_lossy().into_owned(),
        message: e.to_string(),
    })?;
    let out = run(&program, "store", &input)?;
    check(&program, &out)
}

/// `erase`: forgets `server`; `Ok(false)` when the helper had nothing for it.
pub fn erase(name: &str, server: &str) -> Result<bool, AuthError> {
    let program = program(name);
    let out = run(&program, "erase", server.as_bytes())?;
    if !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("not found") {
        return Ok(false);
    }
    check(&program, &out).map(|()| true)
}

fn check(program: &std::ffi::OsStr, out: &std::process::Output) -> Result<(), AuthError> {
    if out.status.success() {
        return Ok(());
    }
    let mut message = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if message.is_empty() {
        message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    }
    Err(AuthError::Helper {
        program: program.to_string_lossy().into_owned(),
        message,
    })
}

fn run(
    program: &std::ffi::OsStr,
    action: &str,
    input: &[u8],
) -> Result<std::process::Output, AuthError> {
    let spawn_err = |source| AuthError::HelperSpawn {
        program: program.to_string_lossy().into_owned(),
        source,
    };
    let mut command = Command::new(program);
    command
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // ETXTBSY: a helper that was just written (or is being updated) can still be open for
    // writing in a process that another thread forked and that has not exec'd yet. That
    // lasts microseconds, so a few short retries are enough.
    let mut attempts = 0;
    let mut child = loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => break other.map_err(spawn_err)?,
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input closes the pipe; its exit status
        // is what tells us whether it worked.
        let _ = stdin.write_all(input);
    }
    child.wait_with_output().map_err(spawn_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
        let p = dir.join("docker-credential-test");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn get_parses_output_and_reads_server_from_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            r#"read server; [ "$1" = get ] || exit 3
if [ "$server" = "reg:1" ]; then echo '{"ServerURL":"reg:1","Username":"u","Secret":"s"}'; exit 0; fi
if [ "$server" = "tok:1" ]; then echo '{"Username":"<token>","Secret":"rt"}'; exit 0; fi
echo "credentials not found in native keychain"; exit 1"#,
        );
        let got = get_with(p.as_os_str(), "reg:1").unwrap().unwrap();
        assert_eq!(
            got.into_credentials(),
            Credentials::Basic {
                username: "u".into(),
                password: "s".into()
            }
        );
        let got = get_with(p.as_os_str(), "tok:1").unwrap().unwrap();
        assert_eq!(
            got.into_credentials(),
            Credentials::IdentityToken("rt".into())
        );
        assert_eq!(get_with(p.as_os_str(), "other").unwrap(), None);
    }

    #[test]
    fn helper_failures_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "echo 'keychain locked'; exit 1");
        let err = get_with(p.as_os_str(), "x").unwrap_err();
        assert!(err.to_string().contains("keychain locked"), "{err}");
        let p = script(dir.path(), "echo 'not json'");
        assert!(get_with(p.as_os_str(), "x").is_err());
        let missing = dir.path().join("docker-credential-absent");
        assert!(matches!(
            get_with(missing.as_os_str(), "x"),
            Err(AuthError::HelperSpawn { .. })
        ));
    }
}
