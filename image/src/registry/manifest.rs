//! The parts of image manifests and indexes that the registry protocol needs: media types,
//! descriptors, platforms and platform selection. Only the fields the client reads are
//! modelled; manifests travel as the exact bytes the registry sent, so digests hold.

use serde::{Deserialize, Serialize};

use rbuild_cache::{Descriptor, Digest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest type we accept, in the order sent in `Accept`.
pub const ACCEPTED_MANIFEST_TYPES: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A content descriptor as it appears in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageDescriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl ImageDescriptor {
    /// The store-level view: digest and size.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.digest.clone(), self.size)
    }
}

/// `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Errors from parsing a platform string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant]")]
pub struct PlatformError(String);

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// The platform of this machine in OCI terms (`linux/amd64`, `linux/arm64/v8`, ...).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new(std::env::consts::OS, arch, variant)
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform::new(os, arch, Some(v))),
            _ => Err(PlatformError(s.to_owned())),
        }
    }

    /// The variant with containerd's defaults filled in (`arm64` → `v8`, `arm` → `v7`,
    /// `amd64` → `v1`), so `linux/arm64` and `linux/arm64/v8` compare equal.
    fn normalized_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None | Some("")) => Some("v8"),
            ("arm", None | Some("")) => Some("v7"),
            ("amd64", None | Some("")) => Some("v1"),
            (_, Some("")) => None,
            (_, v) => v,
        }
    }

    /// How well `candidate` serves a request for `self`: `None` if it cannot run here,
    /// lower is better. An exact variant wins; 32-bit arm also runs older variants.
    fn rank(&self, candidate: &Platform) -> Option<u32> {
        if candidate.os != self.os || candidate.architecture != self.architecture {
            return None;
        }
        let want = self.normalized_variant();
        let have = candidate.normalized_variant();
        if want == have {
            return Some(0);
        }
        if self.architecture == "arm" {
            let level = |v: Option<&str>| v.and_then(|v| v.strip_prefix('v')?.parse::<u32>().ok());
            if let (Some(w), Some(h)) = (level(want), level(have))
                && h < w
            {
                return Some(w - h);
            }
        }
        None
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<ImageDescriptor>,
}

impl Index {
    /// The best manifest for `platform`; the first of equally good ones, as containerd.
    pub fn select(&self, platform: &Platform) -> Option<&ImageDescriptor> {
        self.manifests
            .iter()
            .filter(|m| is_manifest(&m.media_type))
            .filter_map(|m| Some((platform.rank(m.platform.as_ref()?)?, m)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, m)| m)
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: ImageDescriptor,
    #[serde(default)]
    pub layers: Vec<ImageDescriptor>,
}

/// The media type of a manifest document: the `mediaType` field, else the HTTP
/// `Content-Type`, else what its shape says (OCI allows leaving the field out).
pub fn detect_media_type(bytes: &[u8], content_type: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = probe.media_type.filter(|m| !m.is_empty()) {
        return Some(mt);
    }
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| is_index(c) || is_manifest(c));
    if let Some(ct) = ct {
        return Some(ct.to_owned());
    }
    if probe.manifests.is_some() {
        Some(OCI_INDEX.to_owned())
    } else if probe.config.is_some() {
        Some(OCI_MANIFEST.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str, n: u8) -> ImageDescriptor {
        ImageDescriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::sha256_of(&[n]),
            size: 1,
            platform: Some(Platform::parse(p).unwrap()),
        }
    }

    fn index(entries: Vec<ImageDescriptor>) -> Index {
        Index {
            media_type: Some(OCI_INDEX.into()),
            manifests: entries,
        }
    }

    #[test]
    fn selects_exact_platform() {
        let idx = index(vec![
            entry("linux/arm64", 1),
            entry("linux/amd64", 2),
            entry("windows/amd64", 3),
        ]);
        let want = Platform::parse("linux/amd64").unwrap();
        assert_eq!(idx.select(&want).unwrap().digest, Digest::sha256_of(&[2]));
        let want = Platform::parse("linux/s390x").unwrap();
        assert!(idx.select(&want).is_none());
    }

    #[test]
    fn variant_defaults() {
        let idx = index(vec![entry("linux/arm64/v8", 1), entry("linux/amd64/v1", 2)]);
        assert_eq!(
            idx.select(&Platform::parse("linux/arm64").unwrap())
                .unwrap()
                .digest,
            Digest::sha256_of(&[1])
        );
        assert_eq!(
            idx.select(&Platform::parse("linux/amd64").unwrap())
                .unwrap()
                .digest,
            Digest::sha256_of(&[2])
        );
        // An amd64 host does not take a v3-only image; arm/v7 prefers v7, then v6.
        let idx = index(vec![entry("linux/amd64/v3", 1)]);
        assert!(
            idx.select(&Platform::parse("linux/amd64").unwrap())
                .is_none()
        );
        let idx = index(vec![
            entry("linux/arm/v5", 1),
            entry("linux/arm/v6", 2),
            entry("linux/arm/v8", 4),
        ]);
        assert_eq!(
            idx.select(&Platform::parse("linux/arm/v7").unwrap())
                .unwrap()
                .digest,
            Digest::sha256_of(&[2])
        );
        let idx = index(vec![entry("linux/arm/v6", 2), entry("linux/arm", 3)]);
        assert_eq!(
            idx.select(&Platform::parse("linux/arm/v7").unwrap())
                .unwrap()
                .digest,
            Digest::sha256_of(&[3])
        );
    }

    #[test]
    fn entries_without_platform_or_of_other_types_are_skipped() {
        let mut no_platform = entry("linux/amd64", 1);
        no_platform.platform = None;
        let mut attestation = entry("linux/amd64", 2);
        attestation.media_type = "application/vnd.in-toto+json".into();
        let idx = index(vec![no_platform, attestation, entry("linux/amd64", 3)]);
        assert_eq!(
            idx.select(&Platform::parse("linux/amd64").unwrap())
                .unwrap()
                .digest,
            Digest::sha256_of(&[3])
        );
    }

    #[test]
    fn platform_parse_and_host() {
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        let host = Platform::host();
        assert_eq!(host.os, std::env::consts::OS);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn media_type_detection() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#;
        assert_eq!(detect_media_type(m, None).as_deref(), Some(DOCKER_MANIFEST));
        let m = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(detect_media_type(m, None).as_deref(), Some(OCI_INDEX));
        assert_eq!(
            detect_media_type(
                m,
                Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8")
            )
            .as_deref(),
            Some(DOCKER_MANIFEST_LIST)
        );
        let m = br#"{"schemaVersion":2,"config":{}}"#;
        assert_eq!(detect_media_type(m, None).as_deref(), Some(OCI_MANIFEST));
        assert_eq!(detect_media_type(b"{}", None), None);
        assert_eq!(detect_media_type(b"not json", None), None);
    }
}
