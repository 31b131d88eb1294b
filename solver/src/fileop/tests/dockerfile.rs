//! Dockerfiles lowered by the real front end, their file ops applied in graph order: the
//! contract between the front end's lowering and this module.

use std::collections::BTreeMap;
use std::fs;

use rbuild_frontend::{BuildOptions, NoopResolver, lower_source};
use rbuild_graph::{Digest, Op, SourceOp};

use super::*;

/// Builds `dockerfile` (no `RUN`) with the context at `ctx` into a directory; returns it.
fn build(dockerfile: &str, ctx: &Path, ignore: &[&str]) -> tempfile::TempDir {
    let lowered = lower_source(dockerfile, &BuildOptions::default(), &NoopResolver).unwrap();
    let graph = &lowered.graph;
    let work = tempfile::tempdir().unwrap();
    let matcher = Matcher::new(ignore).unwrap();
    let mut out: BTreeMap<Digest, PathBuf> = BTreeMap::new();
    let cancel = CancelToken::new();
    for (n, v) in graph.vertices().iter().enumerate() {
        let dir = work.path().join(format!("v{n}"));
        fs::create_dir(&dir).unwrap();
        let inputs: Vec<PathBuf> = v.inputs.iter().map(|d| out[d].clone()).collect();
        let is_context = |d: &Digest| {
            matches!(
                graph.vertex(d).map(|v| &v.op),
                Some(Op::Source(SourceOp::Context(_)))
            )
        };
        match &v.op {
            Op::Source(SourceOp::Scratch) => {}
            Op::Source(SourceOp::Context(_)) => {
                out.insert(v.digest.clone(), ctx.to_owned());
                continue;
            }
            Op::File(op) => {
                if let Some(base) = inputs.first() {
                    clone_into(base, &dir);
                }
                let sources: Vec<FileSource<'_>> = inputs
                    .iter()
                    .zip(&v.inputs)
                    .enumerate()
                    .map(|(i, (root, d))| {
                        let context = is_context(d);
                        FileSource {
                            root: if i == 0 { &dir } else { root },
                            ignore: context.then_some(&matcher),
                            keep_owner: !context,
                        }
                    })
                    .collect();
                apply(op, &dir, &sources, &cancel).unwrap_or_else(|e| {
                    panic!(
                        "{}: {e}: {:?}",
                        v.meta.description,
                        std::error::Error::source(&e)
                    )
                });
            }
            Op::Merge(_) => {
                for input in &inputs {
                    clone_into(input, &dir);
                }
            }
            other => panic!("no {} in these tests", other.kind()),
        }
        out.insert(v.digest.clone(), dir);
    }
    let target = graph.target().unwrap();
    let result = tempfile::tempdir().unwrap();
    clone_into(&out[target], result.path());
    result
}

/// Copies the whole tree at `from` onto `to` with this module (owners kept).
fn clone_into(from: &Path, to: &Path) {
    let mut s = stage_src("/");
    s.input = 1;
    let op = FileOp::Copy(action(vec![s], "/"));
    let inputs = [
        FileSource {
            root: to,
            ignore: None,
            keep_owner: true,
        },
        FileSource {
            root: from,
            ignore: None,
            keep_owner: true,
        },
    ];
    apply(&op, to, &inputs, &CancelToken::new()).unwrap();
}

#[test]
fn copy_add_workdir_and_heredocs_from_a_dockerfile() {
    let f = fx();
    for p in [
        "package.json",
        "packages/a/package.json",
        "packages/a/index.js",
        "packages/b/package.json",
        "src/app.js",
        "src/app.test.js",
        "docs/read me.md",
        "secret.env",
    ] {
        write(&f.ctx, p, p);
    }
    let tar = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "vendored/lib.txt", &b"lib"[..])
            .unwrap();
        b.into_inner().unwrap()
    };
    fs::write(f.ctx.join("vendor.tar"), tar).unwrap();
    let dockerfile = r#"
FROM scratch AS deps
WORKDIR /app
COPY package.json ./
COPY --parents packages/*/package.json ./
COPY --exclude=**/*.test.js src/ ./src/
COPY ["docs/read me.md", "/app/docs/"]
COPY <<EOF /app/hello.txt
hello $HOME
EOF

FROM scratch
WORKDIR srv
COPY --from=deps /app /srv/app
COPY --link --from=deps /app/package.json /srv/pkg.json
COPY --chmod=0600 --from=deps /app/package.json /srv/pkg600.json
ADD vendor.tar /opt/
COPY secret.en[v] /none/
"#;
    let out = build(dockerfile, &f.ctx, &["secret.env"]);
    let root = out.path();
    assert_eq!(
        tree(root),
        [
            "opt/",
            "opt/vendored/",
            "opt/vendored/lib.txt",
            "srv/",
            "srv/app/",
            "srv/app/docs/",
            "srv/app/docs/read me.md",
            "srv/app/hello.txt",
            "srv/app/package.json",
            "srv/app/packages/",
            "srv/app/packages/a/",
            "srv/app/packages/a/package.json",
            "srv/app/packages/b/",
            "srv/app/packages/b/package.json",
            "srv/app/src/",
            "srv/app/src/app.js",
            "srv/pkg.json",
            "srv/pkg600.json",
        ]
    );
    assert_eq!(read(&root.join("srv/app/hello.txt")), "hello \n");
    assert_eq!(read(&root.join("opt/vendored/lib.txt")), "lib");
    assert_eq!(mode(&root.join("srv/pkg600.json")), 0o600);
    assert_eq!(read(&root.join("srv/pkg.json")), "package.json");
    assert_eq!(mode(&root.join("srv/app/hello.txt")), 0o644);
}
