//! `WWW-Authenticate` parsing (RFC 7235): one or more challenges, each a scheme followed by
//! comma-separated `name=value` parameters whose values are tokens or quoted strings.
//!
//! Registries send e.g. `Bearer realm="https://auth/token",service="registry",
//! scope="repository:x:pull"` or `Basic realm="Registry Realm"`.

use std::collections::BTreeMap;

use super::AuthError;

/// One authentication challenge; scheme lowercased, parameter names lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges, in order.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, AuthError> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
        header,
    };
    let mut out = Vec::new();
    loop {
        p.skip_ws_and_commas();
        if p.done() {
            break;
        }
        let scheme = p.token().ok_or_else(|| p.error("expected a scheme"))?;
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        // Parameters follow until a token that is not followed by `=` (the next scheme).
        loop {
            p.skip_ws_and_commas();
            let save = p.i;
            let Some(name) = p.token() else {
                break;
            };
            p.skip_ws();
            if p.peek() != Some(b'=') {
                p.i = save;
                break;
            }
            p.i += 1;
            p.skip_ws();
            let value = match p.peek() {
                Some(b'"') => p.quoted()?,
                _ => p
                    .token68()
                    .ok_or_else(|| p.error("expected a parameter value"))?
                    .to_owned(),
            };
            challenge.params.insert(name.to_ascii_lowercase(), value);
        }
        out.push(challenge);
    }
    if out.is_empty() {
        return Err(AuthError::InvalidChallenge {
            header: header.to_owned(),
            reason: "no challenge",
        });
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    header: &'a str,
}

impl<'a> Parser<'a> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn error(&self, reason: &'static str) -> AuthError {
        AuthError::InvalidChallenge {
            header: self.header.to_owned(),
            reason,
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> Option<&'a str> {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        // Only ASCII bytes are accepted by the predicates, so this slice is valid UTF-8.
        (self.i > start).then(|| &self.header[start..self.i])
    }

    fn token(&mut self) -> Option<&'a str> {
        self.take_while(is_tchar)
    }

    /// A bare value: token characters plus the token68 extras `/` and `=` padding, and `:`
    /// which some registries leave unquoted in scopes.
    fn token68(&mut self) -> Option<&'a str> {
        self.take_while(|b| is_tchar(b) || matches!(b, b'/' | b'=' | b':'))
    }

    fn quoted(&mut self) -> Result<String, AuthError> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated quoted string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek().ok_or_else(|| self.error("dangling escape"))?;
                    out.push(c);
                    self.i += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.error("quoted string is not UTF-8"))
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("service"), Some("registry.example"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn basic_and_several_challenges() {
        let c = parse_challenges(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));

        let c = parse_challenges(
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "newauth");
        assert_eq!(c[0].param("type"), Some("1"));
        assert_eq!(c[0].param("title"), Some(r#"Login to "apps""#));
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].param("realm"), Some("simple"));
    }

    #[test]
    fn case_whitespace_and_bare_values() {
        let c =
            parse_challenges("  BEARER  Realm = http://127.0.0.1:1/t ,  Service=reg  ").unwrap();
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("http://127.0.0.1:1/t"));
        assert_eq!(c[0].param("service"), Some("reg"));
        let c = parse_challenges("Bearer").unwrap();
        assert!(c[0].params.is_empty());
    }

    #[test]
    fn malformed_headers_are_errors() {
        for bad in [
            "",
            "   ",
            "Bearer realm=\"open",
            "Bearer realm=",
            "\"x\"",
            "Bearer realm=\"a\\",
        ] {
            assert!(
                matches!(
                    parse_challenges(bad),
                    Err(AuthError::InvalidChallenge { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
