//! Unit tests of the lowering rules.

use std::collections::BTreeSet;

use rbuild_graph::{ExecOp, FileOp, ImageConfig, Op, SourceOp};

use super::*;

fn parse(src: &str) -> Dockerfile {
    rbuild_parser::parse(src).unwrap_or_else(|e| panic!("test Dockerfile: {}", e.message))
}

fn lower_with(src: &str, opts: &BuildOptions, resolver: &dyn ImageResolver) -> Lowered {
    lower(&parse(src), opts, resolver).unwrap_or_else(|e| panic!("lower: {e}"))
}

fn lower_ok(src: &str) -> Lowered {
    lower_with(src, &BuildOptions::default(), &NoopResolver)
}

fn lower_err(src: &str, opts: &BuildOptions) -> FrontendError {
    match lower(&parse(src), opts, &NoopResolver) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn with_args(args: &[(&str, &str)]) -> BuildOptions {
    BuildOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// Exec ops of the graph, in order.
fn execs(l: &Lowered) -> Vec<&ExecOp> {
    l.graph
        .vertices()
        .iter()
        .filter_map(|v| match &v.op {
            Op::Exec(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn exec_by_cmd<'a>(l: &'a Lowered, needle: &str) -> &'a ExecOp {
    execs(l)
        .into_iter()
        .find(|e| e.args.last().is_some_and(|a| a.contains(needle)))
        .unwrap_or_else(|| panic!("no RUN containing {needle:?}"))
}

fn digests(l: &Lowered) -> BTreeSet<Digest> {
    l.graph
        .vertices()
        .iter()
        .map(|v| v.digest.clone())
        .collect()
}

fn descriptions(l: &Lowered) -> Vec<String> {
    l.graph
        .vertices()
        .iter()
        .map(|v| v.meta.description.clone())
        .collect()
}

// ---- ARG scoping and build args ----

#[test]
fn global_args_only_reach_from_unless_redeclared() {
    let l = lower_ok(
        "ARG TAG=3.19\nARG MSG=hi\nFROM alpine:$TAG\nRUN echo one\nARG MSG\nRUN echo two\n",
    );
    let one = exec_by_cmd(&l, "echo one");
    assert!(!one.env.iter().any(|e| e.starts_with("MSG=")));
    let two = exec_by_cmd(&l, "echo two");
    assert!(two.env.contains(&"MSG=hi".to_string()));
    assert_eq!(l.stages[0].base, "docker.io/library/alpine:3.19");
}

#[test]
fn global_arg_used_in_stage_word_is_undefined() {
    let l = lower_ok("ARG DIR=/app\nFROM alpine\nWORKDIR /x$DIR\n");
    assert_eq!(l.config.config.working_dir, "/x");
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(l.warnings[0].rule, "UndefinedVar");
    assert_eq!(l.warnings[0].message, "Usage of undefined variable '$DIR'");
    assert_eq!(l.warnings[0].span.line, 3);
}

#[test]
fn declared_arg_without_value_is_not_undefined() {
    let l = lower_ok("FROM alpine\nARG MAYBE\nWORKDIR /x$MAYBE\n");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn build_args_override_global_and_stage_defaults() {
    let src = "ARG BASE=alpine:3.18\nFROM $BASE\nARG V=1\nRUN echo $V\n";
    let l = lower_with(
        src,
        &with_args(&[("BASE", "alpine:3.20"), ("V", "2")]),
        &NoopResolver,
    );
    assert_eq!(l.stages[0].base, "docker.io/library/alpine:3.20");
    assert!(exec_by_cmd(&l, "echo $V").env.contains(&"V=2".to_string()));
    assert_eq!(
        l.config.history.last().unwrap().created_by,
        "RUN |1 V=2 /bin/sh -c echo $V # buildkit"
    );
}

#[test]
fn arg_default_expands_with_earlier_values() {
    let l = lower_ok("FROM alpine\nARG A=x\nARG B=${A}y\nLABEL b=$B\n");
    assert_eq!(l.config.config.labels["b"], "xy");
}

#[test]
fn stage_arg_takes_global_value_and_env_overrides_later() {
    let src = "ARG V=global\nFROM alpine\nARG V\nENV V=env\nRUN echo $V\n";
    let l = lower_ok(src);
    let e = exec_by_cmd(&l, "echo $V");
    assert_eq!(e.env.iter().filter(|x| x.starts_with("V=")).count(), 1);
    assert!(e.env.contains(&"V=env".to_string()));
}

#[test]
fn predefined_platform_args() {
    let opts = BuildOptions {
        target_platform: "linux/arm64".parse().unwrap(),
        ..Default::default()
    };
    let src = "FROM --platform=$BUILDPLATFORM alpine\nARG TARGETARCH BUILDARCH TARGETPLATFORM\nRUN echo $TARGETARCH\n";
    let l = lower_with(src, &opts, &NoopResolver);
    let e = exec_by_cmd(&l, "echo");
    assert!(e.env.contains(&"TARGETARCH=arm64".to_string()));
    assert!(e.env.contains(&"BUILDARCH=amd64".to_string()));
    assert!(e.env.contains(&"TARGETPLATFORM=linux/arm64".to_string()));
    // The stage runs on the build platform; the result is labelled with the target.
    assert_eq!(e.platform, Platform::linux_amd64());
    assert_eq!(l.config.architecture, "arm64");
}

#[test]
fn unused_build_arg_does_not_change_digests() {
    let src = "FROM alpine\nARG USED=1\nRUN echo $USED\nCOPY . /src\n";
    let plain = lower_ok(src);
    let extra = lower_with(src, &with_args(&[("UNUSED", "x")]), &NoopResolver);
    assert_eq!(digests(&plain), digests(&extra));
    assert_eq!(plain.config, extra.config);
}

#[test]
fn used_build_arg_changes_only_later_steps() {
    let src = "FROM alpine\nRUN echo before\nARG V=1\nRUN echo after\n";
    let a = lower_ok(src);
    let b = lower_with(src, &with_args(&[("V", "2")]), &NoopResolver);
    let da: Vec<_> = a.graph.vertices().iter().map(|v| &v.digest).collect();
    let db: Vec<_> = b.graph.vertices().iter().map(|v| &v.digest).collect();
    assert_eq!(da[..2], db[..2]);
    assert_ne!(da[2], db[2]);
}

#[test]
fn proxy_args_never_reach_digests_or_history() {
    let src = "FROM alpine\nRUN apk add curl\n";
    let plain = lower_ok(src);
    let proxied = lower_with(
        src,
        &with_args(&[("HTTP_PROXY", "http://p:3128"), ("no_proxy", "localhost")]),
        &NoopResolver,
    );
    assert_eq!(digests(&plain), digests(&proxied));
    assert_eq!(plain.config.history, proxied.config.history);
    let e = exec_by_cmd(&proxied, "apk");
    assert_eq!(e.proxy_env.http_proxy.as_deref(), Some("http://p:3128"));
    assert_eq!(e.proxy_env.no_proxy.as_deref(), Some("localhost"));
    assert!(
        !e.env
            .iter()
            .any(|x| x.contains("PROXY") || x.contains("proxy"))
    );
}

#[test]
fn declared_proxy_arg_enters_env() {
    let src = "FROM alpine\nARG HTTP_PROXY\nRUN apk add curl\n";
    let l = lower_with(
        src,
        &with_args(&[("HTTP_PROXY", "http://p")]),
        &NoopResolver,
    );
    assert!(
        exec_by_cmd(&l, "apk")
            .env
            .contains(&"HTTP_PROXY=http://p".to_string())
    );
}

// ---- image config ----

#[test]
fn entrypoint_resets_inherited_and_earlier_cmd() {
    let src = "FROM alpine AS a\nCMD [\"a\"]\nFROM a AS b\nENTRYPOINT [\"/e\"]\n";
    let l = lower_ok(src);
    assert_eq!(l.config.config.entrypoint, Some(vec!["/e".to_string()]));
    assert_eq!(l.config.config.cmd, None);

    let l = lower_ok("FROM alpine\nCMD [\"c\"]\nENTRYPOINT [\"/e\"]\n");
    assert_eq!(l.config.config.cmd, Some(vec!["c".to_string()]));

    let l = lower_ok("FROM alpine\nENTRYPOINT [\"/e\"]\nCMD [\"c\"]\n");
    assert_eq!(l.config.config.cmd, Some(vec!["c".to_string()]));
    assert!(l.config.config.args_escaped);
}

#[test]
fn inherited_cmd_survives_without_entrypoint() {
    let l = lower_ok("FROM alpine AS a\nCMD [\"a\"]\nFROM a\nRUN true\n");
    assert_eq!(l.config.config.cmd, Some(vec!["a".to_string()]));
}

#[test]
fn env_keeps_base_order_and_replaces_in_place() {
    let base = ResolvedImage {
        canonical_ref: "docker.io/library/base:1".into(),
        digest: None,
        config: serde_json::from_str(
            r#"{"os":"linux","architecture":"amd64","config":{"Env":["PATH=/bin","LANG=C"]}}"#,
        )
        .unwrap(),
    };
    let r = MemoryResolver::new().with("docker.io/library/base:1", base);
    let l = lower_with(
        "FROM base:1\nENV A=1 LANG=C.UTF-8\nENV PATH=/opt/bin:$PATH B=$A\n",
        &BuildOptions::default(),
        &r,
    );
    assert_eq!(
        l.config.config.env,
        ["PATH=/opt/bin:/bin", "LANG=C.UTF-8", "A=1", "B=1"]
    );
}

#[test]
fn env_pairs_expand_with_values_from_before_the_instruction() {
    let l = lower_ok("FROM alpine\nENV A=old\nENV A=new B=$A\n");
    assert_eq!(l.config.config.env_value("B"), Some("old"));
}

#[test]
fn workdir_joins_and_creates_directories() {
    let l = lower_ok("FROM alpine\nUSER app\nWORKDIR /srv\nWORKDIR data\nWORKDIR /\n");
    assert_eq!(l.config.config.working_dir, "/");
    let mkdirs: Vec<_> = l
        .graph
        .vertices()
        .iter()
        .filter_map(|v| match &v.op {
            Op::File(FileOp::Mkdir(m)) => Some((m.path.clone(), m.owner.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        mkdirs,
        [
            ("/srv".to_string(), Some("app".to_string())),
            ("/srv/data".to_string(), Some("app".to_string()))
        ]
    );
    let wd: Vec<_> = l
        .config
        .history
        .iter()
        .filter(|h| h.created_by.starts_with("WORKDIR"))
        .map(|h| (h.created_by.as_str(), h.empty_layer))
        .collect();
    assert_eq!(
        wd,
        [
            ("WORKDIR /srv", false),
            ("WORKDIR /srv/data", false),
            ("WORKDIR /", true)
        ]
    );
}

#[test]
fn run_uses_cwd_user_and_shell() {
    let l = lower_ok(
        "FROM alpine\nWORKDIR /w\nUSER 1000\nSHELL [\"/bin/bash\", \"-c\"]\nRUN make\nCMD echo hi\n",
    );
    let e = exec_by_cmd(&l, "make");
    assert_eq!(e.args, ["/bin/bash", "-c", "make"]);
    assert_eq!(e.cwd, "/w");
    assert_eq!(e.user, "1000");
    assert_eq!(
        l.config.config.cmd,
        Some(vec!["/bin/bash".into(), "-c".into(), "echo hi".into()])
    );
}

#[test]
fn expose_volume_label_stopsignal() {
    let opts = BuildOptions {
        labels: [("from-cli".to_string(), "yes".to_string())].into(),
        ..Default::default()
    };
    let l = lower_with(
        "FROM alpine\nARG P=8080\nEXPOSE $P 53/udp 9000-9001\nVOLUME /data\nLABEL a=1\nSTOPSIGNAL SIGTERM\n",
        &opts,
        &NoopResolver,
    );
    let ports: Vec<_> = l.config.config.exposed_ports.keys().cloned().collect();
    assert_eq!(ports, ["53/udp", "8080/tcp", "9000/tcp", "9001/tcp"]);
    assert!(l.config.config.volumes.contains_key("/data"));
    assert_eq!(l.config.config.labels["a"], "1");
    assert_eq!(l.config.config.labels["from-cli"], "yes");
    assert_eq!(l.config.config.stop_signal, "SIGTERM");
    let expose = l
        .config
        .history
        .iter()
        .find(|h| h.created_by.starts_with("EXPOSE"))
        .unwrap();
    assert_eq!(
        expose.created_by,
        // BuildKit sorts the raw words (`$P` first), then expands them.
        "EXPOSE [8080/tcp 53/udp 9000/tcp 9001/tcp]"
    );
}

#[test]
fn healthcheck_defaults_and_none() {
    let l = lower_ok("FROM alpine\nHEALTHCHECK --retries=2 CMD curl -f localhost\n");
    let hc = l.config.config.healthcheck.clone().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "curl -f localhost"]);
    assert_eq!((hc.interval, hc.timeout, hc.retries), (0, 0, 2));
    let l = lower_ok("FROM alpine\nHEALTHCHECK --interval=5m CMD [\"true\"]\nHEALTHCHECK NONE\n");
    assert_eq!(l.config.config.healthcheck.unwrap().test, ["NONE"]);
}

#[test]
fn scratch_image_gets_default_path_and_root_workdir() {
    let l = lower_ok("FROM scratch\nCOPY app /app\n");
    assert_eq!(
        l.config.config.env,
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
    assert_eq!(l.config.config.working_dir, "/");
    assert_eq!(
        (l.config.os.as_str(), l.config.architecture.as_str()),
        ("linux", "amd64")
    );
}

// ---- ONBUILD ----

fn onbuild_base() -> MemoryResolver {
    let config: ImageConfig = serde_json::from_str(
        r#"{"os":"linux","architecture":"amd64","config":{"OnBuild":["COPY . /app","RUN make -C /app"],"WorkingDir":"/app"}}"#,
    )
    .unwrap();
    MemoryResolver::new().with(
        "docker.io/library/builder:1",
        ResolvedImage {
            canonical_ref: "docker.io/library/builder:1".into(),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            config,
        },
    )
}

#[test]
fn onbuild_triggers_of_a_resolved_base_run_first_and_are_cleared() {
    let l = lower_with(
        "FROM builder:1\nRUN make test\n",
        &BuildOptions::default(),
        &onbuild_base(),
    );
    let d = descriptions(&l);
    let pos = |needle: &str| d.iter().position(|x| x.contains(needle)).unwrap();
    assert!(d[pos("COPY . /app")].contains("ONBUILD COPY"));
    assert!(pos("ONBUILD RUN make -C /app") < pos("RUN make test"));
    assert!(d[0].starts_with("[1/4] FROM docker.io/library/builder:1@sha256:aaaa"));
    assert!(l.config.config.on_build.is_empty());
}

#[test]
fn onbuild_in_a_stage_triggers_in_its_children_only() {
    let src = "FROM alpine AS tool\nONBUILD RUN echo triggered\nRUN echo tool\nFROM tool\nRUN echo child\n";
    let l = lower_ok(src);
    let d = descriptions(&l);
    let triggered: Vec<_> = d.iter().filter(|x| x.contains("echo triggered")).collect();
    assert_eq!(triggered.len(), 1);
    assert!(triggered[0].contains("ONBUILD RUN echo triggered"));
    assert!(l.config.config.on_build.is_empty());

    let tool = lower_with(
        src,
        &BuildOptions {
            target: Some("tool".into()),
            ..Default::default()
        },
        &NoopResolver,
    );
    assert_eq!(tool.config.config.on_build, ["RUN echo triggered"]);
    assert!(!descriptions(&tool).iter().any(|x| x.contains("triggered")));
}

#[test]
fn onbuild_trigger_can_add_a_stage_dependency() {
    let config: ImageConfig = serde_json::from_str(
        r#"{"os":"linux","architecture":"amd64","config":{"OnBuild":["COPY --from=assets /a /a"]}}"#,
    )
    .unwrap();
    let r = MemoryResolver::new().with(
        "docker.io/library/web:1",
        ResolvedImage {
            canonical_ref: "docker.io/library/web:1".into(),
            digest: None,
            config,
        },
    );
    let src = "FROM alpine AS assets\nRUN echo assets\nFROM alpine AS unused\nRUN echo unused\nFROM web:1\n";
    let l = lower_with(src, &BuildOptions::default(), &r);
    let reach: Vec<bool> = l.stages.iter().map(|s| s.reachable).collect();
    assert_eq!(reach, [true, false, true]);
}

// ---- stages and targets ----

#[test]
fn target_prunes_unreachable_stages() {
    let src =
        "FROM alpine AS a\nRUN echo a\nFROM alpine AS b\nRUN echo b\nFROM a AS c\nRUN echo c\n";
    let l = lower_with(
        src,
        &BuildOptions {
            target: Some("C".into()),
            ..Default::default()
        },
        &NoopResolver,
    );
    assert_eq!(l.target, 2);
    let reach: Vec<bool> = l.stages.iter().map(|s| s.reachable).collect();
    assert_eq!(reach, [true, false, true]);
    assert!(!descriptions(&l).iter().any(|d| d.contains("echo b")));
    assert_eq!(l.graph.stages().len(), 2);
    assert_eq!(l.graph.target(), l.stages[2].output.as_ref());
}

#[test]
fn copy_from_and_mount_from_make_stages_reachable() {
    let src = "FROM alpine AS x\nRUN echo x\nFROM alpine AS y\nRUN echo y\nFROM alpine AS z\nRUN echo z\nFROM scratch\nCOPY --from=x /x /x\nCOPY --from=1 /y /y\n";
    let l = lower_ok(src);
    let reach: Vec<bool> = l.stages.iter().map(|s| s.reachable).collect();
    assert_eq!(reach, [true, true, false, true]);

    let src =
        "FROM alpine AS tools\nRUN echo t\nFROM alpine\nRUN --mount=from=tools,target=/t ls /t\n";
    assert!(lower_ok(src).stages[0].reachable);
}

#[test]
fn unknown_target_is_an_error() {
    let e = lower_err(
        "FROM alpine AS a\n",
        &BuildOptions {
            target: Some("nope".into()),
            ..Default::default()
        },
    );
    assert_eq!(e.to_string(), "target stage \"nope\" could not be found");
    assert_eq!(e.span(), None);
}

#[test]
fn stage_names_are_case_insensitive() {
    let l = lower_ok("FROM alpine AS Build\nRUN echo b\nFROM BUILD\nCOPY --from=build /a /a\n");
    assert_eq!(l.stages[0].name.as_deref(), Some("build"));
    assert_eq!(l.stages[1].base, "BUILD");
    assert!(!l.graph.vertices().iter().any(|v| matches!(
        &v.op,
        Op::Source(SourceOp::Image(i)) if i.reference.contains("build")
    )));
}

#[test]
fn copy_from_an_image_is_a_source_with_a_warning() {
    let l = lower_ok("FROM alpine AS builder\nFROM scratch\nCOPY --from=buildr /a /a\n");
    assert!(l.graph.vertices().iter().any(|v| matches!(
        &v.op,
        Op::Source(SourceOp::Image(i)) if i.reference == "docker.io/library/buildr:latest"
    )));
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(l.warnings[0].rule, "CopyFromUnknownStage");
    assert_eq!(l.warnings[0].span.line, 3);
}

#[test]
fn warnings_are_in_file_order() {
    let l = lower_ok(
        "FROM alpine$NOPE AS a\nFROM scratch\nWORKDIR /$B\nLABEL x=$A\nCOPY --from=img /a /a\n",
    );
    let got: Vec<(&str, usize)> = l.warnings.iter().map(|w| (w.rule, w.span.line)).collect();
    assert_eq!(
        got,
        [
            ("UndefinedArgInFrom", 1),
            ("UndefinedVar", 3),
            ("UndefinedVar", 4),
            ("CopyFromUnknownStage", 5)
        ]
    );
}

// ---- digests ----

#[test]
fn same_dockerfile_same_digests() {
    let src = "FROM golang:1.22 AS build\nCOPY . .\nRUN go build -o /app\nFROM scratch\nCOPY --from=build /app /app\n";
    assert_eq!(digests(&lower_ok(src)), digests(&lower_ok(src)));
}

#[test]
fn changing_one_run_changes_it_and_its_dependents_only() {
    let src = |cmd: &str| {
        format!(
            "FROM alpine AS one\nRUN {cmd}\nRUN echo 2\nFROM alpine AS two\nRUN echo other\nFROM scratch\nCOPY --from=two /x /x\nCOPY --from=one /y /y\n"
        )
    };
    let a = lower_ok(&src("echo 1"));
    let b = lower_ok(&src("echo 1 changed"));
    let (da, db) = (digests(&a), digests(&b));
    let changed: BTreeSet<_> = da.difference(&db).collect();
    // The two RUNs of stage one and the copy that reads it; stage two and the copy
    // from it are untouched.
    assert_eq!(changed.len(), 3);
    assert_eq!(a.stages[1].output, b.stages[1].output);
    assert_ne!(a.stages[0].output, b.stages[0].output);
    let copy_from_two = |l: &Lowered| {
        l.graph
            .vertices()
            .iter()
            .find(|v| v.meta.description.contains("--from=two"))
            .unwrap()
            .digest
            .clone()
    };
    assert_eq!(copy_from_two(&a), copy_from_two(&b));
}

#[test]
fn descriptions_and_history_are_not_in_digests() {
    let a = lower_ok("FROM alpine\nLABEL x=1\nRUN true\n");
    let b = lower_ok("FROM alpine\nLABEL x=2\nMAINTAINER me\nRUN true\n");
    assert_eq!(digests(&a), digests(&b));
    assert_ne!(a.config, b.config);
}

#[test]
fn resolved_digest_pins_the_base() {
    let mut r = MemoryResolver::new();
    r.insert(
        "docker.io/library/alpine:latest",
        ResolvedImage {
            canonical_ref: "docker.io/library/alpine:latest".into(),
            digest: Some(format!("sha256:{}", "b".repeat(64))),
            config: ImageConfig::default(),
        },
    );
    let pinned = lower_with("FROM alpine\nRUN true\n", &BuildOptions::default(), &r);
    let loose = lower_ok("FROM alpine\nRUN true\n");
    assert!(digests(&pinned).is_disjoint(&digests(&loose)));
}

// ---- errors ----

#[test]
fn instruction_before_from_is_an_error() {
    let e = lower_err("RUN true\nFROM alpine\n", &BuildOptions::default());
    assert_eq!(e.to_string(), "no build stage in current context");
    assert_eq!(e.span().unwrap().line, 1);
}

#[test]
fn duplicate_stage_name_is_accepted_like_buildkit() {
    // FROM takes the stage defined above it; COPY --from takes the last of the name.
    let l = lower_ok(
        "FROM busybox AS x\nRUN echo first\nFROM x AS x\nRUN echo second\n\
         FROM scratch\nCOPY --from=x /a /a\n",
    );
    assert_eq!(l.stages[1].base, "x");
    let first = l.stages[0].output.clone().unwrap();
    let second = l.stages[1].output.clone().unwrap();
    assert_ne!(first, second);
    let copy = l.graph.vertices().last().unwrap();
    assert!(
        copy.inputs.contains(&second),
        "COPY --from=x must read the last stage named x"
    );
    assert!(!copy.inputs.contains(&first));
}

#[test]
fn expansion_errors_point_at_the_instruction() {
    let e = lower_err("FROM ubuntu\nENV name='a\\'b'\n", &BuildOptions::default());
    assert_eq!(
        e.to_string(),
        "failed to process \"'a\\\\'b'\": unexpected end of statement while looking for matching single-quote"
    );
    assert_eq!(e.span().unwrap().line, 2);

    let e = lower_err(
        "FROM ubuntu\n\nADD \\conf\\\\\" /.znc\n",
        &BuildOptions::default(),
    );
    assert!(e.to_string().contains("matching double-quote"), "{e}");
    assert_eq!(e.span().unwrap().line, 3);
}

#[test]
fn copy_from_rules() {
    let e = lower_err(
        "FROM alpine AS a\nFROM alpine\nCOPY --from=$X /a /a\n",
        &BuildOptions::default(),
    );
    assert!(
        e.to_string()
            .starts_with("variable expansion is not supported for --from")
    );
    let e = lower_err(
        "FROM alpine\nCOPY --from=5 /a /a\n",
        &BuildOptions::default(),
    );
    assert_eq!(e.to_string(), "invalid stage index 5");
    let e = lower_err(
        "FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nFROM a\n",
        &BuildOptions::default(),
    );
    assert_eq!(
        e.to_string(),
        "cannot copy from stage \"b\", it needs to be defined before current stage \"a\""
    );
    assert_eq!(e.span().unwrap().line, 2);
    let e = lower_err(
        "FROM alpine AS a\nCOPY --from=a /x /x\n",
        &BuildOptions::default(),
    );
    assert_eq!(e.to_string(), "circular dependency detected on stage: a");
}

#[test]
fn offline_base_is_unresolved_not_an_error() {
    let l = lower_ok("FROM registry.example.com:5000/team/app:1.0\nRUN true\n");
    let src = &l.graph.vertices()[0].op;
    match src {
        Op::Source(SourceOp::Image(i)) => {
            assert_eq!(i.reference, "registry.example.com:5000/team/app:1.0");
            assert_eq!(i.digest, None);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn resolver_errors_carry_the_from_span() {
    struct Failing;
    impl ImageResolver for Failing {
        fn resolve(&self, _: &str, _: &Platform) -> Result<Option<ResolvedImage>, ResolveError> {
            Err(ResolveError::new("unauthorized"))
        }
    }
    let e = lower(
        &parse("FROM alpine\nRUN true\nFROM scratch AS x\n"),
        &BuildOptions {
            target: Some("x".into()),
            ..Default::default()
        },
        &Failing,
    );
    // The unreachable stage's base is never asked for.
    assert!(e.is_ok());
    let e = lower(
        &parse("\nFROM alpine\n"),
        &BuildOptions::default(),
        &Failing,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "docker.io/library/alpine:latest: unauthorized"
    );
    assert_eq!(e.span().unwrap().line, 2);
}

#[test]
fn dockerignore_patterns() {
    let p = parse_dockerignore(
        "# comment\n\nnode_modules\n/dist/\n!dist/keep.txt\n  *.log  \n./a/../b\n",
    );
    assert_eq!(p, ["node_modules", "dist", "!dist/keep.txt", "*.log", "b"]);
}

#[test]
fn parser_warnings_and_errors_come_through() {
    let l = lower_source(
        "FROM alpine\nRUN echo a \\\n\n  b\n",
        &BuildOptions::default(),
        &NoopResolver,
    )
    .unwrap();
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert_eq!(l.warnings[0].rule, "NoEmptyContinuation");
    let e = lower_source(
        "FROM alpine\nCOPY --bogus=1 a b\n",
        &BuildOptions::default(),
        &NoopResolver,
    )
    .unwrap_err();
    assert!(matches!(e, FrontendError::Parse { .. }));
    assert_eq!(e.span().unwrap().line, 2);
}

#[test]
fn mount_options() {
    let l = lower_ok(
        "FROM alpine\nWORKDIR /w\nRUN --mount=type=tmpfs,target=t,size=1.5g --mount=type=cache,target=/c,ro=true,mode=0700 true\n",
    );
    let e = exec_by_cmd(&l, "true");
    assert_eq!(e.mounts[0].target, "/w/t");
    assert_eq!(
        e.mounts[0].kind,
        rbuild_graph::MountKind::Tmpfs {
            size: Some(1_610_612_736)
        }
    );
    match &e.mounts[1].kind {
        rbuild_graph::MountKind::Cache {
            id, readonly, mode, ..
        } => {
            assert_eq!(id, "/c");
            assert!(*readonly);
            assert_eq!(*mode, Some(0o700));
        }
        other => panic!("{other:?}"),
    }
    let bad = [
        (
            "type=bind,target=/x,mode=0700",
            "mode not allowed for \"bind\" type mounts",
        ),
        (
            "type=cache,target=/x,bogus=1",
            "unexpected key 'bogus' in 'bogus=1'",
        ),
        (
            "type=cache,target=/x,nonsense",
            "invalid field 'nonsense' must be a key=value pair",
        ),
        (
            "type=bind,target=/x,required",
            "unexpected key 'required' for mount type 'bind'",
        ),
        (
            "type=secret,target=/s,sharing=shared",
            "secret mount should not define sharing",
        ),
        ("type=bind,target=/", "invalid mount target \"/\""),
        (
            "type=tmpfs,target=/t,size=lots",
            "invalid value for size: lots",
        ),
        ("type=nfs,target=/t", "unsupported mount type \"nfs\""),
    ];
    for (mount, want) in bad {
        let e = lower_err(
            &format!("FROM alpine\nRUN --mount={mount} true\n"),
            &BuildOptions::default(),
        );
        assert_eq!(e.to_string(), want, "{mount}");
        assert_eq!(e.span().unwrap().line, 2);
    }
}

#[test]
fn lowered_graph_round_trips_through_json() {
    let l = lower_ok(
        "FROM golang:1.22 AS b\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s go build\nFROM scratch\nCOPY --link --from=b /app /app\nADD https://example.com/x.tgz /x/\nWORKDIR /w\n",
    );
    let text = serde_json::to_string(&l.graph).unwrap();
    let back: rbuild_graph::Graph = serde_json::from_str(&text).unwrap();
    assert_eq!(back, l.graph);
    assert_eq!(back.target(), l.stages[1].output.as_ref());
}

#[test]
fn suggestions_for_near_misses() {
    let e = lower_err(
        "FROM alpine AS build\nFROM alpine AS test\n",
        &BuildOptions {
            target: Some("buidl".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        e.to_string(),
        "target stage \"buidl\" could not be found (did you mean build?)"
    );
    let l = lower_ok("FROM alpine\nARG VERSION=1\nLABEL v=$VERSON\n");
    assert_eq!(
        l.warnings[0].message,
        "Usage of undefined variable '$VERSON' (did you mean $VERSION?)"
    );
    let l = lower_ok("ARG TAG=3\nFROM alpine$TAGG\n");
    assert_eq!(
        l.warnings[0].message,
        "FROM argument 'TAGG' is not declared (did you mean TAG?)"
    );
}

#[test]
fn onbuild_heredoc_trigger_text_is_stored_once() {
    let src = "FROM alpine AS t\nONBUILD RUN <<EOF\necho hi\nEOF\n";
    let l = lower_ok(src);
    assert_eq!(l.config.config.on_build, ["RUN <<EOF\necho hi\nEOF"]);
    // The stored text parses back to the same trigger.
    let df = parse(&l.config.config.on_build[0]);
    assert_eq!(df.instructions.len(), 1);
}
