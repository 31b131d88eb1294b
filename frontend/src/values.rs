//! Small value checks and formats of Docker's front end: paths relative to the working
//! directory, `--chmod`, `STOPSIGNAL`, `EXPOSE` port specs, and Go's `%q`/`%v` renderings
//! that appear in image history.

/// Go's `%q` of a string (`strconv.Quote`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// BuildKit's `system.NormalizePath` for Linux: `new` resolved against `parent`; with
/// `keep_slash` a trailing `/` or `/.` of `new` survives.
pub fn normalize_path(parent: &str, new: &str, keep_slash: bool) -> String {
    let parent = if parent.is_empty() { "/" } else { parent };
    let parent = if parent.starts_with('/') {
        parent.to_string()
    } else {
        clean(&format!("/{parent}"))
    };
    let orig = new;
    let new = if new.is_empty() { parent.as_str() } else { new };
    let mut out = if new.starts_with('/') {
        new.to_string()
    } else {
        clean(&format!("{parent}/{new}"))
    };
    if keep_slash {
        if orig.ends_with('/') && !out.ends_with('/') {
            out.push('/');
        } else if orig.ends_with("/.") {
            if out != "/" {
                out.push('/');
            }
            out.push('.');
        }
    }
    out
}

/// Go's `path.Clean`.
pub use rbuild_graph::clean_path as clean;

/// Checks a `--chmod` value: an octal mode up to 07777, or a symbolic mode (`u+x,go-w`).
pub fn check_chmod(v: &str) -> Result<(), String> {
    let non_octal = || {
        format!("invalid chmod parameter: '{v}'. it should be octal string and between 0 and 07777")
    };
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return match u32::from_str_radix(v, 8) {
            Ok(m) if m <= 0o7777 => Ok(()),
            _ => Err(non_octal()),
        };
    }
    let symbolic_ok = !v.is_empty()
        && v.split(',').all(|clause| {
            let who_len = clause.bytes().take_while(|b| b"ugoa".contains(b)).count();
            let rest = &clause[who_len..];
            !rest.is_empty()
                && rest.starts_with(['+', '-', '='])
                && rest.bytes().all(|b| b"+-=rwxXstugo".contains(&b))
        });
    if symbolic_ok {
        Ok(())
    } else if v.bytes().any(|b| b.is_ascii_digit()) {
        Err(non_octal())
    } else {
        Err(format!("invalid chmod parameter: '{v}'"))
    }
}

/// Linux signal names Docker accepts in `STOPSIGNAL` (without `SIG`).
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// moby's `signal.ParseSignal`: a non-zero number or a known name, `SIG` optional.
pub fn check_signal(raw: &str) -> Result<(), String> {
    let invalid = || format!("Invalid signal: {raw}");
    if let Ok(n) = raw.parse::<i64>() {
        return if n == 0 { Err(invalid()) } else { Ok(()) };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = |base: &str, sign: char, max: u32| {
        name.strip_prefix(base)
            .and_then(|r| r.strip_prefix(sign))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    if SIGNALS.contains(&name) || rt("RTMIN", '+', 15) || rt("RTMAX", '-', 14) {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Parses `EXPOSE` specs (`80`, `80/udp`, `8000-8002`, `[ip:]host:container/proto`) into
/// `port/proto` entries, as BuildKit's `parsePorts`.
pub fn parse_ports(specs: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for raw in specs {
        let parts: Vec<&str> = raw.split(':').collect();
        let (ip, host, container) = match parts.len() {
            1 => ("".to_string(), "", parts[0]),
            2 => ("".to_string(), parts[0], parts[1]),
            n => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
        };
        let (port, proto) = container.split_once('/').unwrap_or((container, ""));
        if port.is_empty() {
            return Err(format!(
                "invalid port: {}: no port specified",
                go_quote(raw)
            ));
        }
        let proto = if proto.is_empty() { "tcp" } else { proto }.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!(
                "invalid port: {}: invalid proto: {proto}",
                go_quote(raw)
            ));
        }
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address: {ip}"));
        }
        let (start, end) =
            port_range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
        if !host.is_empty() {
            let (hs, he) = port_range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?;
            if end - start != he - hs && end != start {
                return Err(format!(
                    "invalid ranges specified for container and host Ports: {port} and {host}"
                ));
            }
        }
        for p in start..=end {
            out.push(format!("{p}/{proto}"));
        }
    }
    Ok(out)
}

fn port_range(s: &str) -> Option<(u32, u32)> {
    let num = |p: &str| p.parse::<u32>().ok().filter(|n| *n <= 65535);
    match s.split_once('-') {
        None => num(s).map(|n| (n, n)),
        Some((a, b)) if a == b => num(a).map(|n| (n, n)),
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            (b >= a).then_some((a, b))
        }
    }
}

/// BuildKit's `suggest.Search` (case-sensitive): the first option within edit distance 2
/// of `val`, closest first; `None` when `val` is itself an option.
pub fn suggest<'o>(val: &str, options: impl IntoIterator<Item = &'o str>) -> Option<&'o str> {
    let mut best = None;
    let mut min = 3;
    for opt in options {
        if opt == val {
            return None;
        }
        let d = levenshtein(val, opt);
        if d < min {
            min = d;
            best = Some(opt);
        }
    }
    best
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Splits one CSV record (`--mount` values): `,` separates, `"..."` quotes, `""` is a quote.
pub fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if c == '"' && at_field_start {
            at_field_start = false;
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        cur.push('"');
                    }
                    Some('"') => break,
                    Some(c) => cur.push(c),
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                }
            }
            match chars.peek() {
                None | Some(',') => {}
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
            continue;
        }
        at_field_start = false;
        if c == ',' {
            fields.push(std::mem::take(&mut cur));
            at_field_start = true;
        } else {
            cur.push(c);
        }
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(
            go_quote_list(&["/bin/sh".into(), "-c".into()]),
            "[\"/bin/sh\" \"-c\"]"
        );
        assert_eq!(go_list(&["/data".into(), "/logs".into()]), "[/data /logs]");
    }

    #[test]
    fn paths_relative_to_workdir() {
        assert_eq!(normalize_path("/app", "src", false), "/app/src");
        assert_eq!(normalize_path("/app", "./", true), "/app/");
        assert_eq!(normalize_path("/app", ".", true), "/app");
        assert_eq!(normalize_path("/app", "../x/", true), "/x/");
        assert_eq!(normalize_path("/", "/abs/dir/", true), "/abs/dir/");
        assert_eq!(normalize_path("/a", "b/.", true), "/a/b/.");
        assert_eq!(normalize_path("/a", "", false), "/a");
        assert_eq!(clean("/a/../../b/./c/"), "/b/c");
        assert_eq!(clean("a/.."), ".");
    }

    #[test]
    fn chmod_values() {
        assert!(check_chmod("0755").is_ok());
        assert!(check_chmod("7777").is_ok());
        assert!(check_chmod("u+x,go-w").is_ok());
        assert!(check_chmod("a=rX").is_ok());
        assert!(
            check_chmod("17777")
                .unwrap_err()
                .contains("between 0 and 07777")
        );
        assert!(
            check_chmod("0789")
                .unwrap_err()
                .contains("between 0 and 07777")
        );
        assert!(check_chmod("rwx").is_err());
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1", "SIGUSR1"] {
            assert!(check_signal(ok).is_ok(), "{ok}");
        }
        assert_eq!(check_signal("0"), Err("Invalid signal: 0".into()));
        assert!(check_signal("SIGFOO").is_err());
        assert!(check_signal("RTMIN+16").is_err());
    }

    #[test]
    fn ports() {
        let p = |v: &[&str]| parse_ports(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["80"]).unwrap(), ["80/tcp"]);
        assert_eq!(p(&["53/UDP"]).unwrap(), ["53/udp"]);
        assert_eq!(
            p(&["8000-8002/tcp"]).unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(p(&["127.0.0.1:80:8080"]).unwrap(), ["8080/tcp"]);
        assert!(p(&["/tcp"]).unwrap_err().contains("no port specified"));
        assert!(p(&["80/xyz"]).unwrap_err().contains("invalid proto"));
        assert!(p(&["70000"]).unwrap_err().contains("invalid containerPort"));
        assert!(p(&["90-80"]).is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("VERSON", ["PATH", "VERSION"]), Some("VERSION"));
        assert_eq!(suggest("path", ["PATH"]), None);
        assert_eq!(suggest("PATH", ["PATH", "PATHS"]), None);
        assert_eq!(suggest("buidl", ["build", "test"]), Some("build"));
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn csv() {
        assert_eq!(
            csv_fields("type=cache,target=/root/.cache").unwrap(),
            ["type=cache", "target=/root/.cache"]
        );
        assert_eq!(csv_fields("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert_eq!(csv_fields("\"a\"\"b\"").unwrap(), ["a\"b"]);
        assert!(csv_fields("\"open").is_err());
    }
}
