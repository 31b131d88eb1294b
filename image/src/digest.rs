//! SHA-256 digests as OCI spells them (`sha256:<64 hex>`), used for diffIDs and blob digests.

use std::fmt;
use std::str::FromStr;

/// A SHA-256 digest; displays as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

/// A string that is not a `sha256:<64 lowercase hex>` digest.
#[derive(Debug, thiserror::Error)]
#[error("invalid sha256 digest {0:?}")]
pub struct ParseDigestError(String);

impl Sha256Digest {
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(data).into())
    }

    /// The 64 lowercase hex characters, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sha256Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseDigestError(s.to_owned());
        let hex_part = s.strip_prefix("sha256:").ok_or_else(bad)?;
        // Uppercase hex is not canonical in OCI digests; refuse it so one digest has one spelling.
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest_matches_known_value() {
        assert_eq!(
            Sha256Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_roundtrip_and_rejects_bad_input() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(d.to_string().parse::<Sha256Digest>().unwrap(), d);
        assert!("sha256:abc".parse::<Sha256Digest>().is_err());
        assert!("md5:00".parse::<Sha256Digest>().is_err());
        assert!(
            d.to_string()
                .to_uppercase()
                .parse::<Sha256Digest>()
                .is_err()
        );
    }
}
