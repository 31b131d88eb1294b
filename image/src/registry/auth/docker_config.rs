//! The docker CLI's `config.json`: where registry credentials live.
//!
//! Lookup order is docker's: a per-registry `credHelpers` entry, else the global
//! `credsStore`, else the `auths` map (base64 `auth`, or `username`/`password`, or an
//! `identitytoken`). [`login`] and [`logout`] rewrite the file atomically with mode 0600 and
//! leave every key they do not own untouched.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use super::helper::{self, HelperCredentials};
use super::{AuthError, CredentialProvider, Credentials};
use crate::registry::reference::DOCKER_HUB;

/// The key docker uses for Docker Hub in `auths` and with credential helpers.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The name a registry is stored under: Docker Hub's legacy URL, else the bare host.
pub fn auth_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        DOCKER_HUB | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Reduces an `auths` key such as `https://host:5000/v1/` to `host:5000`.
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Credentials from a docker `config.json` (re-read at every lookup, so a `login` made
/// while a client lives is seen).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: Option<PathBuf>,
}

impl DockerConfig {
    /// The config at the default location (see [`default_config_path`]), resolved now.
    pub fn from_env() -> DockerConfig {
        DockerConfig {
            path: default_config_path(),
        }
    }

    pub fn at(path: impl Into<PathBuf>) -> DockerConfig {
        DockerConfig {
            path: Some(path.into()),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Looks up credentials for `registry` (as in a reference, e.g. `127.0.0.1:5000`).
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let Some(root) = read_config(path)? else {
            return Ok(None);
        };
        let key = auth_key(registry);
        if let Some(name) = helper_for(&root, &key, registry) {
            return Ok(helper::get(name, &key)?.map(HelperCredentials::into_credentials));
        }
        let Some(auths) = root.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let entry = auths.get(&key).or_else(|| {
            let want = normalize_key(&key);
            auths
                .iter()
                .find(|(k, _)| {
                    let k = normalize_key(k);
                    k == want || (is_docker_hub(want) && is_docker_hub(k))
                })
                .map(|(_, v)| v)
        });
        match entry {
            Some(v) => parse_auth_entry(path, &key, v),
            None => Ok(None),
        }
    }
}

impl CredentialProvider for DockerConfig {
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>, AuthError> {
        self.lookup(registry)
    }
}

fn parse_auth_entry(path: &Path, key: &str, v: &Value) -> Result<Option<Credentials>, AuthError> {
    let field = |name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let invalid = |reason: &'static str| AuthError::InvalidConfig {
        path: path.to_owned(),
        reason: format!("auths entry {key:?}: {reason}"),
    };
    if let Some(token) = field("identitytoken") {
        return Ok(Some(Credentials::IdentityToken(token.to_owned())));
    }
    if let Some(encoded) = field("auth") {
        let raw = B64
            .decode(encoded.trim())
            .map_err(|_| invalid("auth is not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| invalid("auth is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| invalid("auth is not user:password"))?;
        return Ok(Some(Credentials::Basic {
            username: user.to_owned(),
            password: pass.to_owned(),
        }));
    }
    match (field("username"), field("password")) {
        (Some(u), Some(p)) => Ok(Some(Credentials::Basic {
            username: u.to_owned(),
            password: p.to_owned(),
        })),
        _ => Ok(None),
    }
}

/// The parsed file, or `None` if it does not exist.
fn read_config(path: &Path) -> Result<Option<Map<String, Value>>, AuthError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuthError::ConfigIo {
                path: path.to_owned(),
                source,
            });
        }
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_slice(&data) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(AuthError::InvalidConfig {
            path: path.to_owned(),
            reason: "not a JSON object".to_owned(),
        }),
        Err(e) => Err(AuthError::InvalidConfig {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Writes `root` to `path` atomically (temp file in the same directory, fsync, rename)
/// with mode 0600, creating the directory if needed.
fn write_config(path: &Path, root: &Map<String, Value>) -> Result<(), AuthError> {
    let io_err = |source: io::Error| AuthError::ConfigIo {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .map_err(io_err)?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err)?;
    let mut text = serde_json::to_vec_pretty(root).map_err(|e| AuthError::InvalidConfig {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    text.push(b'\n');
    temp.write_all(&text).map_err(io_err)?;
    temp.as_file().sync_all().map_err(io_err)?;
    temp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// The credential helper for a registry: its `credHelpers` entry (under its auth key or
/// its plain name), else `credsStore`.
fn helper_for<'a>(root: &'a Map<String, Value>, key: &str, registry: &str) -> Option<&'a str> {
    root.get("credHelpers")
        .and_then(|h| h.get(key).or_else(|| h.get(registry)))
        .or_else(|| root.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Stores credentials for `registry` like `docker login`: in the registry's credential
/// helper if one is configured, else base64 in `auths`.
pub fn login(path: &Path, registry: &str, username: &str, password: &str) -> Result<(), AuthError> {
    let mut root = read_config(path)?.unwrap_or_default();
    let key = auth_key(registry);
    if let Some(name) = helper_for(&root, &key, registry) {
        helper::store(name, &key, username, password)?;
        // docker leaves an empty marker in auths so `docker info` lists the registry.
        auths_mut(path, &mut root)?.insert(key, Value::Object(Map::new()));
    } else {
        let encoded = B64.encode(format!("{username}:{password}"));
        let mut entry = Map::new();
        entry.insert("auth".to_owned(), Value::String(encoded));
        auths_mut(path, &mut root)?.insert(key, Value::Object(entry));
    }
    write_config(path, &root)
}

/// Removes credentials for `registry` like `docker logout`; `Ok(false)` if there were none.
pub fn logout(path: &Path, registry: &str) -> Result<bool, AuthError> {
    let Some(mut root) = read_config(path)? else {
        return Ok(false);
    };
    let key = auth_key(registry);
    let mut removed = false;
    if let Some(name) = helper_for(&root, &key, registry) {
        removed |= helper::erase(name, &key)?;
    }
    if let Some(auths) = root.get_mut("auths").and_then(Value::as_object_mut) {
        let want = normalize_key(&key).to_owned();
        let before = auths.len();
        auths.retain(|k, _| k != &key && normalize_key(k) != want);
        removed |= auths.len() != before;
    }
    if removed {
        write_config(path, &root)?;
    }
    Ok(removed)
}

fn auths_mut<'a>(
    path: &Path,
    root: &'a mut Map<String, Value>,
) -> Result<&'a mut Map<String, Value>, AuthError> {
    root.entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| AuthError::InvalidConfig {
            path: path.to_owned(),
            reason: "auths is not an object".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("config.json");
        fs::write(&p, text).unwrap();
        p
    }

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn auths_base64_username_password_and_identity_token() {
        let dir = tempfile::tempdir().unwrap();
        let auth = B64.encode("alice:s3cret:with:colons");
        let p = write(
            dir.path(),
            &format!(
                r#"{{"auths":{{
                "127.0.0.1:5000":{{"auth":"{auth}"}},
                "https://reg.example/v1/":{{"username":"bob","password":"pw"}},
                "https://index.docker.io/v1/":{{"identitytoken":"tok"}},
                "empty.example":{{}}
            }}}}"#
            ),
        );
        let c = DockerConfig::at(&p);
        assert_eq!(
            c.lookup("127.0.0.1:5000").unwrap(),
            Some(basic("alice", "s3cret:with:colons"))
        );
        assert_eq!(c.lookup("reg.example").unwrap(), Some(basic("bob", "pw")));
        assert_eq!(
            c.lookup("docker.io").unwrap(),
            Some(Credentials::IdentityToken("tok".into()))
        );
        assert_eq!(c.lookup("empty.example").unwrap(), None);
        assert_eq!(c.lookup("other:1").unwrap(), None);
    }

    #[test]
    fn missing_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = DockerConfig::at(dir.path().join("nope.json"));
        assert_eq!(c.lookup("x").unwrap(), None);
        let p = write(dir.path(), "{not json");
        assert!(matches!(
            DockerConfig::at(&p).lookup("x"),
            Err(AuthError::InvalidConfig { .. })
        ));
        let p = write(dir.path(), r#"{"auths":{"x":{"auth":"%%%"}}}"#);
        let err = DockerConfig::at(&p).lookup("x").unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let p = write(
            dir.path(),
            &format!(
                r#"{{"auths":{{"x":{{"auth":"{}"}}}}}}"#,
                B64.encode("nocolon")
            ),
        );
        assert!(DockerConfig::at(&p).lookup("x").is_err());
    }

    #[test]
    fn login_keeps_other_keys_and_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"{"auths":{"other:1":{"auth":"eDp5"}},"psFormat":"table {{.ID}}","proxies":{"default":{}}}"#,
        );
        login(&p, "127.0.0.1:5000", "u", "p").unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table {{.ID}}");
        assert!(v["proxies"]["default"].is_object());
        assert_eq!(v["auths"]["other:1"]["auth"], "eDp5");
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], B64.encode("u:p"));
        assert_eq!(
            DockerConfig::at(&p).lookup("127.0.0.1:5000").unwrap(),
            Some(basic("u", "p"))
        );
        // No temp files are left beside it.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        assert!(logout(&p, "127.0.0.1:5000").unwrap());
        assert!(!logout(&p, "127.0.0.1:5000").unwrap());
        let v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert!(v["auths"].get("127.0.0.1:5000").is_none());
        assert_eq!(v["auths"]["other:1"]["auth"], "eDp5");
        assert_eq!(v["psFormat"], "table {{.ID}}");
    }

    #[test]
    fn login_creates_file_and_uses_hub_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("config.json");
        login(&p, "docker.io", "me", "pw").unwrap();
        let v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert!(v["auths"][DOCKER_HUB_AUTH_KEY]["auth"].is_string());
        assert_eq!(
            DockerConfig::at(&p).lookup("docker.io").unwrap(),
            Some(basic("me", "pw"))
        );
        assert!(logout(&p, "index.docker.io").unwrap());
        assert!(!logout(&dir.path().join("absent.json"), "x").unwrap());
    }

    #[test]
    fn helper_precedence() {
        let root: Map<String, Value> = serde_json::from_str(
            r#"{"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud","https://index.docker.io/v1/":"hub"}}"#,
        )
        .unwrap();
        assert_eq!(helper_for(&root, "gcr.io", "gcr.io"), Some("gcloud"));
        assert_eq!(
            helper_for(&root, DOCKER_HUB_AUTH_KEY, "docker.io"),
            Some("hub")
        );
        assert_eq!(helper_for(&root, "other:1", "other:1"), Some("desktop"));
        let root: Map<String, Value> =
            serde_json::from_str(r#"{"credsStore":"","credHelpers":{"a":"x"}}"#).unwrap();
        assert_eq!(helper_for(&root, "b", "b"), None);
        assert_eq!(helper_for(&root, "a", "a"), Some("x"));
    }

    #[test]
    fn key_normalisation() {
        assert_eq!(normalize_key("https://h:5000/v1/"), "h:5000");
        assert_eq!(normalize_key("http://h"), "h");
        assert_eq!(normalize_key("h:1"), "h:1");
        assert_eq!(auth_key("docker.io"), DOCKER_HUB_AUTH_KEY);
        assert_eq!(auth_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
