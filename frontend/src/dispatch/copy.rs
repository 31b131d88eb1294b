//! `COPY` and `ADD`: sources from the context, a stage, an image, a URL, a git repository
//! or an inline document; `--chown/--chmod/--link/--parents/--exclude`; `ADD`'s archive
//! unpacking, `--checksum` and `--keep-git-dir`.

use rbuild_graph::{
    CopyAction, CopySource, FileOp, GitSource, HttpSource, MergeOp, MkfileAction, Op, SourceOp,
};
use rbuild_parser::ast::{CopyCmd, Heredoc, Span, Word};
use rbuild_parser::shell::Lexer;

use super::run::push_input;
use super::{Lowerer, StageState};
use crate::error::FrontendError;
use crate::plan::Cmd;
use crate::reference::valid_digest;
use crate::values::{check_chmod, clean, normalize_path};

/// A git source written in a `ADD` (`git@host:repo`, `https://host/repo.git#ref:dir`).
struct GitRef {
    remote: String,
    reference: Option<String>,
    subdir: Option<String>,
}

fn git_ref(src: &str) -> Option<GitRef> {
    let (url, fragment) = match src.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (src, None),
    };
    let is_http = url.starts_with("http://") || url.starts_with("https://");
    let is_git = url.starts_with("git://")
        || url.starts_with("git@")
        || url.starts_with("ssh://")
        || (is_http && url.ends_with(".git"));
    if !is_git {
        return None;
    }
    let (reference, subdir) = match fragment {
        None | Some("") => (None, None),
        Some(f) => match f.split_once(':') {
            Some((r, d)) => (
                (!r.is_empty()).then(|| r.to_string()),
                (!d.is_empty()).then(|| d.to_string()),
            ),
            None => (Some(f.to_string()), None),
        },
    };
    Some(GitRef {
        remote: url.to_string(),
        reference,
        subdir,
    })
}

fn is_http(src: &str) -> bool {
    (src.starts_with("http://") || src.starts_with("https://")) && git_ref(src).is_none()
}

/// The file name an HTTP download gets: the last path segment, else `__unnamed__`.
fn http_filename(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme
        .split_once('/')
        .map_or("", |(_, p)| p)
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    match path.rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => "__unnamed__".into(),
    }
}

/// The heredoc a `<<NAME` source refers to.
fn heredoc_source<'h>(src: &str, heredocs: &'h [Heredoc]) -> Option<&'h Heredoc> {
    let rest = src.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(['"', '\'']);
    heredocs.iter().find(|h| h.name == name)
}

fn contains_wildcards(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' | b'?' | b'[' => return true,
            b'\\' => i += 1,
            _ => {}
        }
        i += 1;
    }
    false
}

/// A boolean flag value (`--link`, `--link=false`).
fn flag_bool(w: Option<&Word>, name: &str, span: Span) -> Result<Option<bool>, FrontendError> {
    let Some(w) = w else { return Ok(None) };
    match w.text.to_ascii_lowercase().as_str() {
        "" | "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        _ => Err(FrontendError::at(
            span,
            format!("expecting boolean value for flag {name}, not: {}", w.text),
        )),
    }
}

impl Lowerer<'_> {
    pub(super) fn dispatch_copy(
        &mut self,
        st: &mut StageState,
        cmd: &Cmd<'_>,
        c: &CopyCmd,
        is_add: bool,
    ) -> Result<(), FrontendError> {
        let span = cmd.ins.span;
        let keyword = if is_add { "ADD" } else { "COPY" };

        // Expansion: flags first, then sources and destination (BuildKit's order).
        let chown = match &c.chown {
            Some(w) => Some(self.expand(st, &w.text, span)?).filter(|s| !s.is_empty()),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(w) => Some(self.expand(st, &w.text, span)?).filter(|s| !s.is_empty()),
            None => None,
        };
        let checksum = match &c.checksum {
            Some(w) => Some(self.expand(st, &w.text, span)?).filter(|s| !s.is_empty()),
            None => None,
        };
        let mut paths = Vec::new();
        let mut docs = Vec::new();
        for src in &c.sources {
            match heredoc_source(&src.text, &c.heredocs) {
                Some(h) => docs.push(h),
                None => paths.push(self.expand(st, &src.text, span)?),
            }
        }
        let dest_raw = self.expand(st, &c.dest.text, span)?;
        let link = flag_bool(c.link.as_ref(), "link", span)?.unwrap_or(false);
        let parents = flag_bool(c.parents.as_ref(), "parents", span)?.unwrap_or(false);
        let unpack_flag = flag_bool(c.unpack.as_ref(), "unpack", span)?;
        let keep_git_dir = flag_bool(c.keep_git_dir.as_ref(), "keep-git-dir", span)?;
        let exclude: Vec<String> = c.exclude.iter().map(|w| w.text.clone()).collect();

        let dest_in = if dest_raw.is_empty() || dest_raw == "." {
            "./"
        } else {
            dest_raw.as_str()
        };
        let dest = normalize_path(&st.cwd, dest_in, true);
        if let Some(m) = &chmod {
            check_chmod(m).map_err(|e| FrontendError::at(span, e))?;
        }
        if let Some(sum) = &checksum {
            if !is_add {
                return Err(FrontendError::at(
                    span,
                    "checksum can't be specified for COPY",
                ));
            }
            if paths.len() + docs.len() != 1 {
                return Err(FrontendError::at(
                    span,
                    "checksum can't be specified for multiple sources",
                ));
            }
            let src = paths.first().map(String::as_str).unwrap_or("");
            if !is_http(src) && git_ref(src).is_none() {
                return Err(FrontendError::at(
                    span,
                    "checksum requires HTTP(S) or Git sources",
                ));
            }
            if is_http(src) && !valid_digest(sum) {
                return Err(FrontendError::at(
                    span,
                    format!("invalid checksum digest format: {sum}"),
                ));
            }
        }

        let mut message = String::from(keyword);
        if parents {
            message.push_str(" --parents");
        }
        if let Some(o) = &chown {
            message.push_str(&format!(" --chown={o}"));
        }
        if let Some(m) = &chmod {
            message.push_str(&format!(" --chmod={m}"));
        }

        // Input 0 is what the copy lands on: the stage, or nothing with --link.
        let use_link = link && chmod.is_none();
        let base = if use_link {
            self.scratch()?
        } else {
            st.root.clone()
        };
        let mut inputs = vec![base];
        let mut sources = Vec::new();
        let local_root = match cmd.copy_from {
            Some(src) => {
                let what = format!(
                    "cannot copy from stage {:?}, it needs to be defined before current stage {:?}",
                    c.from.as_ref().map(|w| w.text.as_str()).unwrap_or(""),
                    st.label
                );
                Some(self.source_root(src, &what, span)?)
            }
            None => None,
        };

        for src in &paths {
            message.push(' ');
            message.push_str(src);
            if let Some(g) = git_ref(src) {
                if !is_add {
                    return Err(FrontendError::at(
                        span,
                        "source can't be a git ref for COPY",
                    ));
                }
                let op = Op::Source(SourceOp::Git(GitSource {
                    remote: g.remote.clone(),
                    reference: g.reference,
                    subdir: g.subdir,
                    keep_git_dir: keep_git_dir.unwrap_or(false),
                    checksum: checksum.clone(),
                }));
                let d = self.add(
                    op,
                    vec![],
                    format!("git {}", g.remote),
                    Some(st),
                    Some(span),
                )?;
                sources.push(plain_source(push_input(&mut inputs, d), "/", false));
            } else if is_http(src) {
                if !is_add {
                    return Err(FrontendError::at(span, "source can't be a URL for COPY"));
                }
                let filename = http_filename(src);
                let op = Op::Source(SourceOp::Http(HttpSource {
                    url: src.clone(),
                    filename: filename.clone(),
                    checksum: checksum.clone(),
                }));
                let d = self.add(op, vec![], format!("https {src}"), Some(st), Some(span))?;
                let mut s = plain_source(
                    push_input(&mut inputs, d),
                    &format!("/{filename}"),
                    unpack_flag.unwrap_or(false),
                );
                s.follow_symlinks = false;
                sources.push(s);
            } else {
                let root = match &local_root {
                    Some(d) => d.clone(),
                    None => self.context()?,
                };
                let input = push_input(&mut inputs, root);
                let (mut path, mut include, mut required) = (src.clone(), Vec::new(), Vec::new());
                if parents {
                    let (pivot, pattern) = match src.split_once("/./") {
                        Some((p, pat)) => (p.to_string(), pat.to_string()),
                        None => ("/".to_string(), src.clone()),
                    };
                    let pattern = normalize_path("/", &pattern, false);
                    if !contains_wildcards(&pivot) && !contains_wildcards(&pattern) {
                        required.push(clean(&format!("/{pivot}/{pattern}")));
                    }
                    include.push(pattern.trim_start_matches('/').to_string());
                    path = pivot;
                }
                sources.push(CopySource {
                    input,
                    path: normalize_path("/", &path, false),
                    include_patterns: include,
                    required_paths: required,
                    unpack: unpack_flag.unwrap_or(is_add),
                    follow_symlinks: true,
                    dir_contents_only: true,
                    allow_wildcard: true,
                    allow_empty_wildcard: true,
                });
            }
        }
        for doc in docs {
            message.push_str(&format!(" <<{}", doc.name));
            let data = if doc.expand {
                let mut lexer = Lexer::new('\\');
                lexer.skip_process_quotes = true;
                let r = lexer.process_word(&doc.content, &st.env).map_err(|e| {
                    FrontendError::Expand {
                        word: doc.content.clone(),
                        span,
                        source: e,
                    }
                })?;
                self.report_unmatched(st, &r.unmatched, span);
                r.value
            } else {
                doc.content.clone()
            };
            let scratch = self.scratch()?;
            let op = Op::File(FileOp::Mkfile(MkfileAction {
                path: format!("/{}", doc.name),
                mode: 0o644,
                data,
                owner: None,
            }));
            let file = self.add(
                op,
                vec![scratch],
                "preparing inline document".into(),
                Some(st),
                Some(span),
            )?;
            sources.push(plain_source(
                push_input(&mut inputs, file),
                &format!("/{}", doc.name),
                false,
            ));
        }
        message.push(' ');
        message.push_str(&dest_raw);

        let text = self.command_text(st, &cmd.ins.original, false);
        let description = self.describe(st, &text, cmd.on_build);
        let op = Op::File(FileOp::Copy(CopyAction {
            sources,
            dest,
            chown,
            chmod,
            exclude,
            parents,
            create_dest_path: true,
        }));
        let copied = self.add(op, inputs, description.clone(), Some(st), Some(span))?;
        st.root = if use_link {
            // Same step number for the merge: BuildKit shows both under one progress group.
            st.cmd_index = st.cmd_index.saturating_sub(1);
            let merge_description = self.describe(st, &format!("LINK {text}"), cmd.on_build);
            self.add(
                Op::Merge(MergeOp {}),
                vec![st.root.clone(), copied],
                merge_description,
                Some(st),
                Some(span),
            )?
        } else {
            copied
        };
        self.history_entry(st, message, true, true);
        Ok(())
    }
}

/// A single-file or whole-tree source without wildcards (URL, git, inline document).
fn plain_source(input: usize, path: &str, unpack: bool) -> CopySource {
    CopySource {
        input,
        path: path.to_string(),
        include_patterns: Vec::new(),
        required_paths: Vec::new(),
        unpack,
        follow_symlinks: false,
        dir_contents_only: false,
        allow_wildcard: false,
        allow_empty_wildcard: false,
    }
}
