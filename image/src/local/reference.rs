//! Image names as Docker spells them: `busybox` means `docker.io/library/busybox:latest`.
//!
//! This is the small normaliser the local store needs for tags; it validates the reference
//! grammar's character rules but does not resolve registries or mirrors.

use rbuild_cache::Digest;

/// The default registry of unqualified names.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `docker.io/library/busybox` and `latest`.
    Tag { repository: String, tag: String },
    /// `docker.io/library/busybox` and a manifest digest.
    Digest { repository: String, digest: Digest },
}

impl Reference {
    pub fn repository(&self) -> &str {
        match self {
            Reference::Tag { repository, .. } | Reference::Digest { repository, .. } => repository,
        }
    }
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference format {name:?}: {reason}")]
pub struct ReferenceError {
    pub name: String,
    pub reason: &'static str,
}

/// Parses and normalises `[domain/]path[:tag][@digest]`.
pub fn parse_reference(name: &str) -> Result<Reference, ReferenceError> {
    let fail = |reason| ReferenceError {
        name: name.to_owned(),
        reason,
    };
    let (rest, digest) = match name.split_once('@') {
        Some((rest, d)) => (
            rest,
            Some(Digest::parse(d).map_err(|_| fail("bad digest"))?),
        ),
        None => (name, None),
    };
    // A colon after the last slash starts the tag; one before it is a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(fail("empty name"));
    }
    let (domain, remainder) = match path.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN, path.to_owned()),
    };
    let remainder = if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        format!("{OFFICIAL_PREFIX}{remainder}")
    } else {
        remainder
    };
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(fail("bad registry host"));
    }
    for component in remainder.split('/') {
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(fail("repository name must be lowercase"));
        }
        let ok = !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && component.as_bytes()[0].is_ascii_alphanumeric()
            && component.as_bytes()[component.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(fail("bad repository name"));
        }
    }
    let repository = format!("{domain}/{remainder}");
    if repository.len() > MAX_NAME {
        return Err(fail("repository name too long"));
    }
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= MAX_TAG
            && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(fail("bad tag"));
        }
    }
    Ok(match digest {
        Some(digest) => Reference::Digest { repository, digest },
        None => Reference::Tag {
            repository,
            tag: tag.unwrap_or(DEFAULT_TAG).to_owned(),
        },
    })
}

/// Normalises a name that must be a tag: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize_tag(name: &str) -> Result<String, ReferenceError> {
    match parse_reference(name)? {
        Reference::Tag { repository, tag } => Ok(format!("{repository}:{tag}")),
        Reference::Digest { .. } => Err(ReferenceError {
            name: name.to_owned(),
            reason: "a digest reference cannot be used as a tag",
        }),
    }
}

/// Splits a normalised `repository:tag` at the tag's colon.
pub fn split_tag(full: &str) -> (&str, &str) {
    let last_slash = full.rfind('/').map_or(0, |i| i + 1);
    match full[last_slash..].rfind(':') {
        Some(i) => (&full[..last_slash + i], &full[last_slash + i + 1..]),
        None => (full, ""),
    }
}

/// The short form Docker shows: `docker.io/library/busybox` → `busybox`,
/// `docker.io/user/app` → `user/app`; other registries stay as they are.
pub fn familiar(repository: &str) -> &str {
    match repository.strip_prefix("docker.io/") {
        Some(rest) => rest.strip_prefix(OFFICIAL_PREFIX).unwrap_or(rest),
        None => repository,
    }
}

/// `familiar` applied to the repository of a full `repository:tag`.
pub fn familiar_tag(full: &str) -> String {
    let (repo, tag) = split_tag(full);
    format!("{}:{tag}", familiar(repo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/app", "docker.io/user/app:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("localhost:5000/app:v1", "localhost:5000/app:v1"),
            ("localhost/app", "localhost/app:latest"),
            (
                "127.0.0.1:5000/a/b/c:x_y-1.2",
                "127.0.0.1:5000/a/b/c:x_y-1.2",
            ),
            ("quay.io/org/img", "quay.io/org/img:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_tag(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn digests_and_errors() {
        let d = Digest::sha256_of(b"m");
        assert_eq!(
            parse_reference(&format!("busybox@{d}")).unwrap(),
            Reference::Digest {
                repository: "docker.io/library/busybox".into(),
                digest: d.clone()
            }
        );
        assert!(normalize_tag(&format!("busybox@{d}")).is_err());
        for bad in [
            "",
            "Busybox",
            "app:",
            "app:-x",
            "a//b",
            "-a",
            "app@sha256:12",
            ":tag",
            "a b",
        ] {
            assert!(parse_reference(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            normalize_tag("Busybox").unwrap_err().to_string(),
            "invalid reference format \"Busybox\": repository name must be lowercase"
        );
    }

    #[test]
    fn familiar_names() {
        assert_eq!(familiar("docker.io/library/busybox"), "busybox");
        assert_eq!(familiar("docker.io/user/app"), "user/app");
        assert_eq!(familiar("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
        assert_eq!(
            familiar_tag("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
    }
}
