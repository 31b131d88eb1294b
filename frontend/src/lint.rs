//! Lint rules that need only the parsed Dockerfile (BuildKit's build checks of the same
//! names and messages). Rules that need expansion or stage resolution (`UndefinedVar`,
//! unknown `COPY --from` stages) are reported by the lowering itself.
//!
//! The `# check=skip=Rule1,Rule2;error=true` directive is honoured by [`CheckDirective`].

use std::collections::BTreeMap;

use rbuild_parser::ast::{
    Command, CommandLine, Dockerfile, FromCmd, Instruction, KeyValue, Span, Word,
};

use crate::Warning;

/// The parsed `# check=` directive: which rules to skip, and whether warnings fail the check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckDirective {
    /// Rule names to skip; `all` skips every rule.
    pub skip: Vec<String>,
    /// `error=true`: any remaining warning makes the check fail.
    pub error: bool,
}

impl CheckDirective {
    /// Reads the `check` directive of a Dockerfile (BuildKit syntax: `skip=A,B;error=true`).
    pub fn from_dockerfile(df: &Dockerfile) -> Self {
        let mut out = Self::default();
        let Some(d) = df.directives.iter().find(|d| d.name == "check") else {
            return out;
        };
        for part in d.value.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "skip" => out.skip.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                "error" => out.error = v.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        out
    }

    /// True when `rule` is switched off by the directive.
    pub fn skips(&self, rule: &str) -> bool {
        self.skip
            .iter()
            .any(|s| s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case(rule))
    }
}

/// Runs every AST-level rule and returns the findings in file order.
pub fn lint(df: &Dockerfile) -> Vec<Warning> {
    let mut out = Vec::new();
    for w in &df.warnings {
        // The parser reports empty continuation lines; the rule name is BuildKit's.
        out.push(Warning {
            rule: if w.rule == "NoEmptyContinuation" {
                "NoEmptyContinuation"
            } else {
                w.rule
            },
            message: w.message.clone(),
            span: w.span,
        });
    }
    instruction_casing(df, &mut out);
    let mut stage = StageState::default();
    for ins in &df.instructions {
        match &ins.command {
            Command::From(from) => {
                stage.finish(&mut out);
                stage = StageState::default();
                from_rules(ins, from, &mut out);
            }
            Command::Cmd(cl) | Command::Entrypoint(cl) => {
                if matches!(cl, CommandLine::Shell(_)) && !stage.custom_shell {
                    out.push(warn(
                        "JSONArgsRecommended",
                        format!(
                            "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                            ins.command.name()
                        ),
                        ins.span,
                    ));
                }
                stage.count(ins);
            }
            Command::Healthcheck(_) => stage.count(ins),
            Command::Shell(_) => stage.custom_shell = true,
            Command::Maintainer(_) => out.push(warn(
                "MaintainerDeprecated",
                "Maintainer instruction is deprecated in favor of using label".into(),
                ins.span,
            )),
            Command::Env(kvs) => {
                legacy_key_value("ENV", kvs, ins.span, &mut out);
                for kv in kvs {
                    if !kv.value.text.is_empty() && looks_secret(&kv.key.text) {
                        out.push(secret_warning("ENV", &kv.key));
                    }
                }
            }
            Command::Label(kvs) => legacy_key_value("LABEL", kvs, ins.span, &mut out),
            Command::Arg(args) => {
                for a in args {
                    if looks_secret(&a.name.text) {
                        out.push(secret_warning("ARG", &a.name));
                    }
                }
            }
            Command::Workdir(w) => {
                if !stage.has_absolute_workdir && !is_absolute_workdir(&w.text) {
                    out.push(warn(
                        "WorkdirRelativePath",
                        format!(
                            "Relative workdir {:?} can have unexpected results if the base image changes",
                            w.text
                        ),
                        w.span,
                    ));
                }
                if is_absolute_workdir(&w.text) {
                    stage.has_absolute_workdir = true;
                }
            }
            Command::Expose(ports) => expose_rules(ports, &mut out),
            _ => {}
        }
    }
    stage.finish(&mut out);
    stage_names(df, &mut out);
    out.sort_by_key(|w| (w.span.line, w.span.col));
    out
}

/// Per-stage state for rules that look at a whole stage.
#[derive(Default)]
struct StageState {
    /// Instructions of which only the last takes effect, by name, with their spans.
    seen: BTreeMap<&'static str, Vec<Span>>,
    custom_shell: bool,
    has_absolute_workdir: bool,
}

impl StageState {
    fn count(&mut self, ins: &Instruction) {
        self.seen
            .entry(ins.command.name())
            .or_default()
            .push(ins.span);
    }

    fn finish(&mut self, out: &mut Vec<Warning>) {
        for (name, spans) in &self.seen {
            if spans.len() > 1 {
                for span in &spans[..spans.len() - 1] {
                    out.push(warn(
                        "MultipleInstructionsDisallowed",
                        format!(
                            "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
                        ),
                        *span,
                    ));
                }
            }
        }
    }
}

fn warn(rule: &'static str, message: String, span: Span) -> Warning {
    Warning {
        rule,
        message,
        span,
    }
}

fn is_absolute_workdir(path: &str) -> bool {
    // A leading variable may expand to an absolute path; BuildKit only flags literal
    // relative paths. Windows drive paths count as absolute too.
    path.starts_with('/')
        || path.starts_with('$')
        || path.starts_with('\\')
        || path.as_bytes().get(1) == Some(&b':')
}

/// BuildKit's FileConsistentCommandCasing: every keyword should follow the majority casing;
/// a keyword in mixed case breaks the rule on its own.
fn instruction_casing(df: &Dockerfile, out: &mut Vec<Warning>) {
    let keywords: Vec<&Word> = df.instructions.iter().map(|i| &i.keyword).collect();
    let lower = keywords
        .iter()
        .filter(|k| k.text.chars().all(|c| !c.is_ascii_uppercase()))
        .count();
    let upper = keywords
        .iter()
        .filter(|k| k.text.chars().all(|c| !c.is_ascii_lowercase()))
        .count();
    let majority_lower = lower > upper;
    for k in keywords {
        let ok = if majority_lower {
            k.text.chars().all(|c| !c.is_ascii_uppercase())
        } else {
            k.text.chars().all(|c| !c.is_ascii_lowercase())
        };
        if !ok {
            out.push(warn(
                "ConsistentInstructionCasing",
                format!(
                    "Command '{}' should match the case of the command majority ({})",
                    k.text,
                    if majority_lower {
                        "lowercase"
                    } else {
                        "uppercase"
                    }
                ),
                k.span,
            ));
        }
    }
}

fn from_rules(ins: &Instruction, from: &FromCmd, out: &mut Vec<Warning>) {
    if let Some(name) = &from.alias {
        if name.text.chars().any(|c| c.is_ascii_uppercase()) {
            out.push(warn(
                "StageNameCasing",
                format!("Stage name '{}' should be lowercase", name.text),
                name.span,
            ));
        }
        let lowered = name.text.to_ascii_lowercase();
        if lowered == "scratch" || lowered == "context" {
            out.push(warn(
                "ReservedStageName",
                format!(
                    "Stage name should not use the same name as reserved stage {:?}",
                    lowered
                ),
                name.span,
            ));
        }
    }
    if let Some(as_kw) = &from.as_keyword {
        let from_upper = ins.keyword.text.chars().all(|c| !c.is_ascii_lowercase());
        let from_lower = ins.keyword.text.chars().all(|c| !c.is_ascii_uppercase());
        let as_upper = as_kw.text.chars().all(|c| !c.is_ascii_lowercase());
        let as_lower = as_kw.text.chars().all(|c| !c.is_ascii_uppercase());
        if (from_upper && !as_upper) || (from_lower && !as_lower) {
            out.push(warn(
                "FromAsCasing",
                format!(
                    "'{}' and '{}' keywords' casing do not match",
                    as_kw.text, ins.keyword.text
                ),
                as_kw.span,
            ));
        }
    }
    if let Some(p) = &from.platform {
        if p.text == "$TARGETPLATFORM" || p.text == "${TARGETPLATFORM}" {
            out.push(warn(
                "RedundantTargetPlatform",
                format!(
                    "Setting platform to predefined {} in FROM is redundant as this is the default behavior",
                    p.text
                ),
                p.span,
            ));
        } else if !p.text.contains('$') {
            out.push(warn(
                "FromPlatformFlagConstDisallowed",
                format!(
                    "FROM --platform flag should not use constant value {:?}",
                    p.text
                ),
                p.span,
            ));
        }
    }
}

fn stage_names(df: &Dockerfile, out: &mut Vec<Warning>) {
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    for ins in &df.instructions {
        if let Command::From(FromCmd {
            alias: Some(name), ..
        }) = &ins.command
        {
            let key = name.text.to_ascii_lowercase();
            if seen.insert(key, ()).is_some() {
                out.push(warn(
                    "DuplicateStageName",
                    format!(
                        "Duplicate stage name {:?}, stage names should be unique",
                        name.text.to_ascii_lowercase()
                    ),
                    name.span,
                ));
            }
        }
    }
}

fn legacy_key_value(instr: &str, kvs: &[KeyValue], span: Span, out: &mut Vec<Warning>) {
    if kvs.iter().any(|kv| kv.legacy) {
        out.push(warn(
            "LegacyKeyValueFormat",
            format!(
                "\"{instr} key=value\" should be used instead of legacy \"{instr} key value\" format"
            ),
            span,
        ));
    }
}

/// BuildKit's secret-name heuristic: a `_`-separated token of the name is one of the
/// keywords, and no token says the value is public.
fn looks_secret(name: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let tokens: Vec<String> = name.split('_').map(str::to_ascii_lowercase).collect();
    tokens.iter().any(|t| KEYWORDS.contains(&t.as_str())) && !tokens.iter().any(|t| t == "public")
}

fn secret_warning(instr: &str, name: &Word) -> Warning {
    warn(
        "SecretsUsedInArgOrEnv",
        format!(
            "Do not use ARG or ENV instructions for sensitive data ({instr} {:?})",
            name.text
        ),
        name.span,
    )
}

fn expose_rules(ports: &[Word], out: &mut Vec<Warning>) {
    for p in ports {
        if p.text.contains('$') {
            continue;
        }
        if let Some((_, proto)) = p.text.rsplit_once('/')
            && proto != proto.to_ascii_lowercase()
        {
            out.push(warn(
                "ExposeProtoCasing",
                format!(
                    "Defined protocol '{}' in EXPOSE instruction should be lowercase",
                    p.text
                ),
                p.span,
            ));
        }
        if p.text.contains(':') {
            out.push(warn(
                "ExposeInvalidFormat",
                format!(
                    "EXPOSE instruction should not define an IP address or host-port mapping, found '{}'",
                    p.text
                ),
                p.span,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_follow_buildkit_tokens() {
        assert!(looks_secret("API_KEY"));
        assert!(looks_secret("db_password"));
        assert!(looks_secret("GITHUB_TOKEN"));
        assert!(looks_secret("apikey"));
        assert!(!looks_secret("KEYBOARD_LAYOUT"));
        assert!(!looks_secret("MONKEY"));
        assert!(!looks_secret("PUBLIC_KEY"));
        assert!(!looks_secret("PATH"));
    }

    #[test]
    fn workdir_absolute_forms() {
        assert!(is_absolute_workdir("/app"));
        assert!(is_absolute_workdir("$HOME/app"));
        assert!(is_absolute_workdir("C:\\app"));
        assert!(!is_absolute_workdir("app"));
        assert!(!is_absolute_workdir("./app"));
    }

    fn rules(src: &str) -> Vec<(&'static str, usize)> {
        let df = rbuild_parser::parse(src).expect("test Dockerfile parses");
        lint(&df)
            .into_iter()
            .map(|w| (w.rule, w.span.line))
            .collect()
    }

    #[test]
    fn stage_name_and_as_casing() {
        let found = rules("FROM busybox AS Builder\nfrom busybox AS runner\nRUN true\n");
        assert!(found.contains(&("StageNameCasing", 1)));
        assert!(found.contains(&("FromAsCasing", 2)));
        assert!(!found.contains(&("FromAsCasing", 1)));
    }

    #[test]
    fn duplicate_and_reserved_stage_names() {
        let found = rules("FROM a AS x\nFROM b AS X\nFROM c AS scratch\n");
        assert!(found.contains(&("DuplicateStageName", 2)));
        assert!(found.contains(&("ReservedStageName", 3)));
    }

    #[test]
    fn json_args_recommended_unless_shell_changed() {
        let found = rules("FROM a\nCMD echo hi\nENTRYPOINT [\"x\"]\n");
        assert_eq!(
            found
                .iter()
                .filter(|r| r.0 == "JSONArgsRecommended")
                .count(),
            1
        );
        let found = rules("FROM a\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\n");
        assert!(!found.iter().any(|r| r.0 == "JSONArgsRecommended"));
    }

    #[test]
    fn maintainer_legacy_env_and_secrets() {
        let found = rules(
            "FROM a\nMAINTAINER me\nENV PATH /x\nARG API_TOKEN\nENV DB_PASSWORD=\nENV GH_TOKEN=abc\n",
        );
        assert!(found.contains(&("MaintainerDeprecated", 2)));
        assert!(found.contains(&("LegacyKeyValueFormat", 3)));
        assert!(found.contains(&("SecretsUsedInArgOrEnv", 4)));
        // An ENV that sets a secret-looking name to nothing is not flagged, as in BuildKit.
        assert!(!found.contains(&("SecretsUsedInArgOrEnv", 5)));
        assert!(found.contains(&("SecretsUsedInArgOrEnv", 6)));
    }

    #[test]
    fn empty_continuation_line() {
        let found = rules("FROM a\nRUN echo a \\\n\n  b\n");
        assert!(found.iter().any(|r| r.0 == "NoEmptyContinuation"));
    }

    #[test]
    fn instruction_casing_follows_majority() {
        let found = rules("FROM a\nRUN a\nrun b\nCOPY x y\n");
        assert_eq!(found, vec![("ConsistentInstructionCasing", 3)]);
    }

    #[test]
    fn multiple_cmd_and_relative_workdir() {
        let found =
            rules("FROM a\nCMD [\"a\"]\nCMD [\"b\"]\nWORKDIR app\nWORKDIR /srv\nWORKDIR data\n");
        assert!(found.contains(&("MultipleInstructionsDisallowed", 2)));
        assert!(found.contains(&("WorkdirRelativePath", 4)));
        // After an absolute WORKDIR, a relative one is predictable.
        assert!(!found.contains(&("WorkdirRelativePath", 6)));
    }

    #[test]
    fn expose_and_platform_rules() {
        let found = rules(
            "FROM --platform=linux/amd64 a\nEXPOSE 80/TCP 127.0.0.1:8080:80\nFROM --platform=$TARGETPLATFORM b\n",
        );
        assert!(found.contains(&("FromPlatformFlagConstDisallowed", 1)));
        assert!(found.contains(&("ExposeProtoCasing", 2)));
        assert!(found.contains(&("ExposeInvalidFormat", 2)));
        assert!(found.contains(&("RedundantTargetPlatform", 3)));
    }

    #[test]
    fn check_directive_skips_and_errors() {
        let df = rbuild_parser::parse(
            "# check=skip=MaintainerDeprecated,JSONArgsRecommended;error=true\nFROM a\n",
        )
        .unwrap();
        let d = CheckDirective::from_dockerfile(&df);
        assert!(d.error);
        assert!(d.skips("maintainerdeprecated"));
        assert!(d.skips("JSONArgsRecommended"));
        assert!(!d.skips("StageNameCasing"));
        let all = CheckDirective {
            skip: vec!["all".into()],
            error: false,
        };
        assert!(all.skips("anything"));
    }
}
