//! `--change` instructions for `import` (and later `commit`): the Dockerfile instructions
//! that only edit the image config, parsed by a small parser of their own.
//!
//! Accepted, as Docker accepts them: `CMD`, `ENTRYPOINT`, `ENV`, `EXPOSE`, `HEALTHCHECK`,
//! `LABEL`, `ONBUILD`, `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR`. Exec (JSON) and shell forms
//! are both understood.
//!
//! Words are expanded as moby's `BuildFromConfig` does: the arguments of `ENV`, `LABEL`,
//! `EXPOSE`, `VOLUME`, `USER`, `WORKDIR` and `STOPSIGNAL` go through the Dockerfile word
//! expander (quotes and escapes removed, `$VAR` and `${VAR...}` substituted) with the image's
//! environment as it stands before the change, so `ENV B=$A` sees an `A` set by an earlier
//! `--change`; `CMD`, `ENTRYPOINT`, `HEALTHCHECK` and `ONBUILD` are kept as written.

use std::collections::BTreeMap;

use rbuild_parser::shell::Lexer;

use crate::oci::{Empty, HealthConfig, ImageConfig, RuntimeConfig};

/// A `--change` line that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("empty --change")]
    Empty,
    #[error("{0} is not supported by --change")]
    Unsupported(String),
    #[error("{instruction} requires {what}")]
    MissingArgument {
        instruction: &'static str,
        what: &'static str,
    },
    #[error("{instruction}: {message}")]
    Invalid {
        instruction: &'static str,
        message: String,
    },
}

/// Applies `changes` in order to `config`.
pub fn apply_changes(config: &mut ImageConfig, changes: &[String]) -> Result<(), ChangeError> {
    for change in changes {
        apply_one(config, change)?;
    }
    Ok(())
}

fn apply_one(config: &mut ImageConfig, change: &str) -> Result<(), ChangeError> {
    let change = change.trim();
    let (keyword, rest) = change
        .split_once(char::is_whitespace)
        .map_or((change, ""), |(k, r)| (k, r.trim()));
    if keyword.is_empty() {
        return Err(ChangeError::Empty);
    }
    let shell = config
        .config
        .as_ref()
        .and_then(|c| c.shell.clone())
        .unwrap_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned()]);
    let rc = config.config.get_or_insert_with(RuntimeConfig::default);
    let words = Words::new(&rc.env);
    let keyword = keyword.to_ascii_uppercase();
    match keyword.as_str() {
        "CMD" => rc.cmd = Some(command_line("CMD", rest, &shell)?),
        "ENTRYPOINT" => rc.entrypoint = Some(command_line("ENTRYPOINT", rest, &shell)?),
        "ENV" => {
            for (key, value) in words.key_values("ENV", rest)? {
                let prefix = format!("{key}=");
                let entry = format!("{key}={value}");
                match rc.env.iter_mut().find(|e| e.starts_with(&prefix)) {
                    Some(existing) => *existing = entry,
                    None => rc.env.push(entry),
                }
            }
        }
        "LABEL" => {
            for (key, value) in words.key_values("LABEL", rest)? {
                rc.labels.insert(key, value);
            }
        }
        "EXPOSE" => {
            for word in non_empty("EXPOSE", "at least one port", words.split(rest)?)? {
                for port in expand_ports(&word)? {
                    rc.exposed_ports.insert(port, Empty {});
                }
            }
        }
        "VOLUME" => {
            let volumes = match json_array(rest) {
                Some(list) => list
                    .iter()
                    .map(|v| words.expand(v))
                    .collect::<Result<_, _>>()?,
                None => words.split(rest)?,
            };
            for volume in non_empty("VOLUME", "at least one path", volumes)? {
                if volume.trim().is_empty() {
                    return Err(invalid("VOLUME", "volume path cannot be empty"));
                }
                rc.volumes.insert(volume, Empty {});
            }
        }
        "USER" => rc.user = Some(words.single("USER", "a user", rest)?),
        "WORKDIR" => {
            let dir = words.single("WORKDIR", "a path", rest)?;
            // A relative WORKDIR continues from the current one.
            let joined = if dir.starts_with('/') {
                dir
            } else {
                let base = rc.working_dir.clone().unwrap_or_else(|| "/".to_owned());
                format!("{}/{dir}", base.trim_end_matches('/'))
            };
            rc.working_dir = Some(joined);
        }
        "STOPSIGNAL" => rc.stop_signal = Some(words.single("STOPSIGNAL", "a signal", rest)?),
        "ONBUILD" => {
            let trigger = rest.split_whitespace().next().unwrap_or_default();
            if trigger.is_empty() {
                return Err(ChangeError::MissingArgument {
                    instruction: "ONBUILD",
                    what: "an instruction",
                });
            }
            if matches!(
                trigger.to_ascii_uppercase().as_str(),
                "ONBUILD" | "FROM" | "MAINTAINER"
            ) {
                return Err(invalid(
                    "ONBUILD",
                    &format!("{trigger} isn't allowed as an ONBUILD trigger"),
                ));
            }
            rc.on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_owned());
        }
        "HEALTHCHECK" => rc.healthcheck = Some(healthcheck(rest)?),
        _ => return Err(ChangeError::Unsupported(keyword)),
    }
    Ok(())
}

fn invalid(instruction: &'static str, message: &str) -> ChangeError {
    ChangeError::Invalid {
        instruction,
        message: message.to_owned(),
    }
}

fn non_empty(
    instruction: &'static str,
    what: &'static str,
    list: Vec<String>,
) -> Result<Vec<String>, ChangeError> {
    if list.is_empty() {
        Err(ChangeError::MissingArgument { instruction, what })
    } else {
        Ok(list)
    }
}

/// A JSON array of strings, if `text` is one (the exec form).
fn json_array(text: &str) -> Option<Vec<String>> {
    if !text.starts_with('[') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Exec form as given, shell form wrapped in the image's shell.
fn command_line(
    instruction: &'static str,
    rest: &str,
    shell: &[String],
) -> Result<Vec<String>, ChangeError> {
    if let Some(list) = json_array(rest) {
        return Ok(list);
    }
    if rest.is_empty() {
        return Err(ChangeError::MissingArgument {
            instruction,
            what: "a command",
        });
    }
    let mut out = shell.to_vec();
    out.push(rest.to_owned());
    Ok(out)
}

/// Splits on unquoted whitespace, keeping quotes and escapes for the expander: `"..."` (with
/// `\` escapes), `'...'` (literal), and `\` escapes outside quotes.
fn raw_words(text: &str) -> Result<Vec<String>, ChangeError> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                current.push('\\');
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '\'' => {
                in_word = true;
                current.push('\'');
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return Err(invalid_quote()),
                    }
                }
                current.push('\'');
            }
            '"' => {
                in_word = true;
                current.push('"');
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => {
                            current.push('\\');
                            current.push(chars.next().ok_or_else(invalid_quote)?);
                        }
                        Some(c) => current.push(c),
                        None => return Err(invalid_quote()),
                    }
                }
                current.push('"');
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        out.push(current);
    }
    Ok(out)
}

/// The word expander with the image's environment before the change being applied.
struct Words {
    lexer: Lexer,
    env: BTreeMap<String, String>,
}

impl Words {
    fn new(env: &[String]) -> Words {
        let env = env
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        Words {
            lexer: Lexer::default(),
            env,
        }
    }

    /// One word with quotes and escapes removed and variables substituted.
    fn expand(&self, word: &str) -> Result<String, ChangeError> {
        self.lexer
            .process_word(word, &self.env)
            .map(|e| e.value)
            .map_err(|e| ChangeError::Invalid {
                instruction: "--change",
                message: e.to_string(),
            })
    }

    /// Splits on unquoted whitespace, then expands each word (a value with spaces stays one
    /// word, as in moby).
    fn split(&self, text: &str) -> Result<Vec<String>, ChangeError> {
        raw_words(text)?.iter().map(|w| self.expand(w)).collect()
    }

    fn single(
        &self,
        instruction: &'static str,
        what: &'static str,
        rest: &str,
    ) -> Result<String, ChangeError> {
        let list = non_empty(instruction, what, raw_words(rest)?)?;
        if list.len() > 1 {
            return Err(invalid(instruction, "takes exactly one argument"));
        }
        self.expand(&list[0])
    }

    /// `KEY=VALUE...` pairs, or the legacy `KEY VALUE` form (one pair, value is the rest).
    fn key_values(
        &self,
        instruction: &'static str,
        rest: &str,
    ) -> Result<Vec<(String, String)>, ChangeError> {
        let list = non_empty(instruction, "KEY=VALUE", raw_words(rest)?)?;
        if !list[0].contains('=') {
            let (key, value) = rest
                .split_once(char::is_whitespace)
                .map(|(k, v)| (k, v.trim()))
                .ok_or(ChangeError::MissingArgument {
                    instruction,
                    what: "a value",
                })?;
            return Ok(vec![(self.expand(key)?, self.expand(value)?)]);
        }
        list.into_iter()
            .map(|word| match word.split_once('=') {
                Some(("", _)) => Err(invalid(instruction, "empty key")),
                Some((key, value)) => Ok((self.expand(key)?, self.expand(value)?)),
                None => Err(invalid(
                    instruction,
                    &format!("{:?} is not KEY=VALUE", self.expand(&word)?),
                )),
            })
            .collect()
    }
}

fn invalid_quote() -> ChangeError {
    ChangeError::Invalid {
        instruction: "--change",
        message: "unterminated quote".to_owned(),
    }
}

/// `80` → `80/tcp`; `53/udp` kept; `8000-8002/tcp` → three ports.
fn expand_ports(word: &str) -> Result<Vec<String>, ChangeError> {
    let bad = || invalid("EXPOSE", &format!("invalid port {word:?}"));
    let (ports, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let parse = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a).ok_or_else(bad)?, parse(b).ok_or_else(bad)?),
        None => {
            let p = parse(ports).ok_or_else(bad)?;
            (p, p)
        }
    };
    if start > end {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--interval=D --timeout=D --start-period=D
/// --start-interval=D --retries=N] CMD command`.
fn healthcheck(rest: &str) -> Result<HealthConfig, ChangeError> {
    const I: &str = "HEALTHCHECK";
    let mut hc = HealthConfig::default();
    let mut rest = rest.trim();
    if rest.eq_ignore_ascii_case("none") {
        hc.test = vec!["NONE".to_owned()];
        return Ok(hc);
    }
    while let Some(flag) = rest.strip_prefix("--") {
        let (flag, tail) = flag
            .split_once(char::is_whitespace)
            .map_or((flag, ""), |(f, t)| (f, t.trim_start()));
        let (name, value) = flag
            .split_once('=')
            .ok_or_else(|| invalid(I, &format!("flag --{flag} needs a value")))?;
        match name {
            "interval" => hc.interval = duration_ns(value)?,
            "timeout" => hc.timeout = duration_ns(value)?,
            "start-period" => hc.start_period = duration_ns(value)?,
            "start-interval" => hc.start_interval = duration_ns(value)?,
            "retries" => {
                hc.retries = value
                    .parse()
                    .ok()
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| invalid(I, &format!("invalid retries {value:?}")))?;
            }
            other => return Err(invalid(I, &format!("unknown flag --{other}"))),
        }
        rest = tail;
    }
    let (keyword, command) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(k, c)| (k, c.trim()));
    if !keyword.eq_ignore_ascii_case("CMD") {
        return Err(invalid(I, "expects NONE or CMD"));
    }
    hc.test = match json_array(command) {
        Some(list) => std::iter::once("CMD".to_owned()).chain(list).collect(),
        None if command.is_empty() => {
            return Err(ChangeError::MissingArgument {
                instruction: I,
                what: "a command",
            });
        }
        None => vec!["CMD-SHELL".to_owned(), command.to_owned()],
    };
    Ok(hc)
}

/// Go-style durations (`30s`, `1m30s`, `500ms`, `1h`) in nanoseconds.
fn duration_ns(text: &str) -> Result<i64, ChangeError> {
    let bad = || invalid("HEALTHCHECK", &format!("invalid duration {text:?}"));
    let mut total: i64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let scale: i64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Result<RuntimeConfig, ChangeError> {
        let mut config = ImageConfig::default();
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut config, &changes)?;
        Ok(config.config.unwrap_or_default())
    }

    #[test]
    fn every_instruction_applies() {
        let rc = apply(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /init --flag",
            r#"ENV A=1 B="two words" C='x y' D=a\ b"#,
            "ENV LEGACY value with spaces",
            "env A=override",
            r#"LABEL org.x="v 1" other=2"#,
            "EXPOSE 80 53/udp 8000-8002",
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /cache",
            "USER app:app",
            "WORKDIR /srv",
            "WORKDIR app",
            "STOPSIGNAL SIGTERM",
            "ONBUILD RUN echo hi",
            "HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://localhost/",
        ])
        .unwrap();
        assert_eq!(rc.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(rc.entrypoint.unwrap(), ["/bin/sh", "-c", "/init --flag"]);
        assert_eq!(
            rc.env,
            [
                "A=override",
                "B=two words",
                "C=x y",
                "D=a b",
                "LEGACY=value with spaces"
            ]
        );
        assert_eq!(rc.labels["org.x"], "v 1");
        assert_eq!(rc.labels["other"], "2");
        let ports: Vec<_> = rc.exposed_ports.keys().cloned().collect();
        assert_eq!(
            ports,
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
        let volumes: Vec<_> = rc.volumes.keys().cloned().collect();
        assert_eq!(volumes, ["/cache", "/data", "/logs"]);
        assert_eq!(rc.user.unwrap(), "app:app");
        assert_eq!(rc.working_dir.unwrap(), "/srv/app");
        assert_eq!(rc.stop_signal.unwrap(), "SIGTERM");
        assert_eq!(rc.on_build.unwrap(), ["RUN echo hi"]);
        let hc = rc.healthcheck.unwrap();
        assert_eq!(hc.test, ["CMD-SHELL", "curl -f http://localhost/"]);
        assert_eq!((hc.interval, hc.retries), (90_000_000_000, 3));
    }

    #[test]
    fn words_expand_with_the_environment_before_each_change() {
        let rc = apply(&[
            "ENV A=1 U=app P=8080",
            r#"ENV B=$A C="${A}x y" A=2 D=$A"#,
            "ENV LEGACY $C and ${A}",
            r#"LABEL l=$B q='$A' e=\$A"#,
            "WORKDIR /srv/$U",
            "USER ${U}:${G:-staff}",
            "EXPOSE $P ${Q:-53}/udp",
            r#"VOLUME ["/data/$U"]"#,
            "VOLUME /cache/$A",
            "STOPSIGNAL SIG$SIG",
            "CMD echo $A",
            r#"ENTRYPOINT ["/bin/echo", "$A"]"#,
        ])
        .unwrap();
        assert_eq!(
            rc.env,
            [
                "A=2",
                "U=app",
                "P=8080",
                "B=1",
                "C=1x y",
                "D=1",
                "LEGACY=1x y and 2"
            ]
        );
        assert_eq!(rc.labels["l"], "1");
        assert_eq!(rc.labels["q"], "$A");
        assert_eq!(rc.labels["e"], "$A");
        assert_eq!(rc.working_dir.unwrap(), "/srv/app");
        assert_eq!(rc.user.unwrap(), "app:staff");
        let ports: Vec<_> = rc.exposed_ports.keys().cloned().collect();
        assert_eq!(ports, ["53/udp", "8080/tcp"]);
        let volumes: Vec<_> = rc.volumes.keys().cloned().collect();
        assert_eq!(volumes, ["/cache/2", "/data/app"]);
        // An unset variable expands to nothing, as in moby.
        assert_eq!(rc.stop_signal.unwrap(), "SIG");
        // Commands are never expanded: the shell (or nobody) sees `$A` at run time.
        assert_eq!(rc.cmd.unwrap(), ["/bin/sh", "-c", "echo $A"]);
        assert_eq!(rc.entrypoint.unwrap(), ["/bin/echo", "$A"]);
    }

    #[test]
    fn healthcheck_forms() {
        assert_eq!(
            apply(&["HEALTHCHECK NONE"])
                .unwrap()
                .healthcheck
                .unwrap()
                .test,
            ["NONE"]
        );
        let hc = apply(&[r#"HEALTHCHECK --timeout=500ms CMD ["true"]"#])
            .unwrap()
            .healthcheck
            .unwrap();
        assert_eq!(hc.test, ["CMD", "true"]);
        assert_eq!(hc.timeout, 500_000_000);
    }

    #[test]
    fn bad_changes_are_errors() {
        for (change, message) in [
            ("RUN echo", "RUN is not supported by --change"),
            ("FROM scratch", "FROM is not supported by --change"),
            ("", "empty --change"),
            ("CMD", "CMD requires a command"),
            ("EXPOSE 0", "EXPOSE: invalid port \"0\""),
            ("EXPOSE 80/icmp", "EXPOSE: invalid port \"80/icmp\""),
            ("EXPOSE 90-80", "EXPOSE: invalid port \"90-80\""),
            ("ENV", "ENV requires KEY=VALUE"),
            ("ENV =x", "ENV: empty key"),
            ("ENV A=1 B", "ENV: \"B\" is not KEY=VALUE"),
            ("ENV KEY", "ENV requires a value"),
            ("LABEL a=\"open", "--change: unterminated quote"),
            ("USER a b", "USER: takes exactly one argument"),
            (
                "HEALTHCHECK --interval=5x CMD true",
                "HEALTHCHECK: invalid duration \"5x\"",
            ),
            (
                "HEALTHCHECK --bogus=1 CMD true",
                "HEALTHCHECK: unknown flag --bogus",
            ),
            ("HEALTHCHECK echo", "HEALTHCHECK: expects NONE or CMD"),
            (
                "ONBUILD FROM x",
                "ONBUILD: FROM isn't allowed as an ONBUILD trigger",
            ),
        ] {
            assert_eq!(
                apply(&[change]).unwrap_err().to_string(),
                message,
                "{change:?}"
            );
        }
    }
}
