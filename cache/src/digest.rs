//! Content digests in the OCI form `<algorithm>:<hex>`.
//!
//! Only `sha256` is accepted today; `sha512` is recognised by name so the error is precise,
//! and the [`Algorithm`] enum is where it would be added.

use std::fmt;
use std::io;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// Errors from parsing a digest string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected <algorithm>:<hex>")]
    MissingAlgorithm(String),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("invalid digest {digest:?}: {algorithm} needs {expected} lowercase hex characters")]
    InvalidHex {
        digest: String,
        algorithm: Algorithm,
        expected: usize,
    },
}

/// A digest algorithm the store can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    Sha256,
}

impl Algorithm {
    /// The name used in digest strings and store directory names.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
        }
    }

    /// Length of the hex encoding of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated content digest such as `sha256:e3b0c442...`.
///
/// Ordering is by the string form, so sorted collections of digests are stable across
/// machines.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    // Kept as the full string so `as_str` is free; the algorithm prefix is validated.
    text: String,
    algorithm: Algorithm,
}

impl Digest {
    /// Parses and validates `<algorithm>:<hex>`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (name, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingAlgorithm(s.to_owned()))?;
        let algorithm = Algorithm::from_name(name)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(name.to_owned()))?;
        let expected = algorithm.hex_len();
        let valid = hex.len() == expected
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(DigestError::InvalidHex {
                digest: s.to_owned(),
                algorithm,
                expected,
            });
        }
        Ok(Digest {
            text: s.to_owned(),
            algorithm,
        })
    }

    /// The digest of a raw sha256 output.
    pub fn from_sha256(bytes: [u8; 32]) -> Digest {
        Digest {
            text: format!("sha256:{}", hex::encode(bytes)),
            algorithm: Algorithm::Sha256,
        }
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::from_sha256(sha2::Sha256::digest(data).into())
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, after the colon.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The full `<algorithm>:<hex>` form.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental hasher producing a [`Digest`]; also a [`io::Write`] sink so it can sit in
/// a streaming pipeline.
#[derive(Debug, Clone, Default)]
pub struct Hasher {
    inner: sha2::Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest::from_sha256(self.inner.finalize().into())
    }
}

impl io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_input_has_the_well_known_digest() {
        assert_eq!(Digest::sha256_of(b"").as_str(), EMPTY);
        assert_eq!(Hasher::new().finish().as_str(), EMPTY);
    }

    #[test]
    fn parse_roundtrips_and_exposes_parts() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), &EMPTY[7..]);
        assert_eq!(d.to_string(), EMPTY);
    }

    #[test]
    fn hasher_matches_one_shot_digest_across_chunks() {
        let mut h = Hasher::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.len(), 11);
        assert_eq!(h.finish(), Digest::sha256_of(b"hello world"));
    }

    #[test]
    fn rejects_bad_digests() {
        assert!(matches!(
            Digest::parse("e3b0c442"),
            Err(DigestError::MissingAlgorithm(_))
        ));
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert_eq!(
            Digest::parse(&sha512),
            Err(DigestError::UnsupportedAlgorithm("sha512".into()))
        );
        assert_eq!(
            Digest::parse("md5:abc").unwrap_err().to_string(),
            "unsupported digest algorithm \"md5\""
        );
        for bad in [
            "sha256:",
            "sha256:abc",
            &EMPTY.to_uppercase().replace("SHA256", "sha256"),
            &format!("{EMPTY}0"),
            &EMPTY.replace('e', "g"),
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(DigestError::InvalidHex { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_uses_the_string_form_and_validates() {
        let d = Digest::sha256_of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
