//! `--output` values in buildx's syntax: comma-separated `key=value` fields (CSV, so a quoted
//! field may hold commas: `"name=a,b"`), or a bare path (`-o DIR` is `type=local,dest=DIR`,
//! `-o -` is `type=tar,dest=-`).
//!
//! Where rbuild differs from buildx (all cases buildx rejects, so nothing that works there
//! changes meaning here):
//! - `type=oci`/`type=docker` with a `dest` that is an existing directory or ends in `/`
//!   writes a layout directory, as `tar=false` does; buildx refuses a directory there.
//! - `type=docker` needs `dest`: there is no daemon to load into (buildx's default), and the
//!   image is in rbuild's store already.
//! - A bare field right after `name=` is one more name, so `name=a:1,b:2` works unquoted.
//! - Unknown keys are errors, not silently ignored.
//! - Without `oci-mediatypes=`, an output keeps the media types of the stored manifest
//!   (OCI for what rbuild builds), so its digest is the one the store shows; BuildKit's
//!   docker exporter switches to Docker media types by default. `oci-mediatypes=false`
//!   asks for them explicitly.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::compress::Compression;

/// Errors of parsing an `--output` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("output is empty")]
    Empty,
    #[error("type is required for output")]
    NoType,
    #[error("unknown output type {0:?} (expected oci, docker, local, tar, image or registry)")]
    UnknownType(String),
    #[error("invalid value {0:?} in output (expected key=value)")]
    Field(String),
    #[error("unterminated quote in output {0:?}")]
    Quote(String),
    #[error("unknown key {key:?} for {kind} output (known: {known})")]
    UnknownKey {
        key: String,
        kind: &'static str,
        known: String,
    },
    #[error("{key}={value:?} is not a boolean")]
    Bool { key: String, value: String },
    #[error("compression-level={0:?} is not an integer")]
    Level(String),
    #[error("unknown compression {0:?} (expected uncompressed, gzip or zstd)")]
    Compression(String),
    #[error("dest is required for {0} output")]
    NoDest(&'static str),
    #[error("dest cannot be stdout for {0} output")]
    StdoutDir(&'static str),
    #[error("destination directory {0} is a file")]
    DirIsFile(PathBuf),
    #[error("type=docker cannot write to stdout as a directory layout")]
    StdoutLayout,
}

/// Where a file-type output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A file, written to a temp file beside it and renamed into place.
    File(PathBuf),
    /// A layout directory (OCI and Docker outputs only).
    Dir(PathBuf),
    /// Standard output (`dest=-`).
    Stdout,
}

/// What an output writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// An OCI image layout, as a tar or a directory.
    Oci(Destination),
    /// A `docker load`-able archive (also an OCI layout), or the same as a directory.
    Docker(Destination),
    /// The image's final filesystem in a directory.
    Local(PathBuf),
    /// A tar of the image's final filesystem ([`Destination::Dir`] never occurs).
    Tar(Destination),
    /// The image under `name=` in the local store, pushed when `push` is set.
    Image { push: bool },
}

impl OutputKind {
    /// The type name as buildx spells it.
    pub fn name(&self) -> &'static str {
        match self {
            OutputKind::Oci(_) => "oci",
            OutputKind::Docker(_) => "docker",
            OutputKind::Local(_) => "local",
            OutputKind::Tar(_) => "tar",
            OutputKind::Image { .. } => "image",
        }
    }
}

/// The layer compression an output asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionKind {
    Uncompressed,
    Gzip,
    Zstd,
}

impl fmt::Display for CompressionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompressionKind::Uncompressed => "uncompressed",
            CompressionKind::Gzip => "gzip",
            CompressionKind::Zstd => "zstd",
        })
    }
}

/// One parsed `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub kind: OutputKind,
    /// `name=` values as given; empty means "the build's `-t` names".
    pub names: Vec<String>,
    /// `compression=`; `None` keeps the stored layers as they are.
    pub compression: Option<CompressionKind>,
    /// `compression-level=`.
    pub compression_level: Option<i32>,
    /// `force-compression=true`: recompress even layers already in the asked compression.
    pub force_compression: bool,
    /// `oci-mediatypes=`; `None` keeps the stored manifest's media types.
    pub oci_mediatypes: Option<bool>,
}

const IMAGE_KEYS: &[&str] = &[
    "compression",
    "compression-level",
    "force-compression",
    "oci-mediatypes",
];

impl OutputSpec {
    /// Parses one `--output` value. Directories are told by looking at the filesystem (an
    /// existing directory), so parse where the export will run.
    pub fn parse(input: &str) -> Result<OutputSpec, ParseError> {
        if input.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        let fields = split_csv(input)?;
        // A single field that is not `key=value`: a path (buildx's shorthand).
        if fields.len() == 1 && !fields[0].contains('=') {
            let path = &fields[0];
            let kind = if path == "-" {
                OutputKind::Tar(Destination::Stdout)
            } else {
                OutputKind::Local(local_dir(path)?)
            };
            return Ok(OutputSpec::of(kind));
        }
        let mut kind: Option<String> = None;
        let mut attrs: Vec<(String, String)> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut last_was_name = false;
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                if last_was_name && !field.trim().is_empty() {
                    names.push(field.trim().to_owned());
                    continue;
                }
                return Err(ParseError::Field(field));
            };
            let key = key.trim().to_ascii_lowercase();
            last_was_name = key == "name";
            match key.as_str() {
                "type" => kind = Some(value.to_owned()),
                "name" => names.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned),
                ),
                _ => attrs.push((key, value.to_owned())),
            }
        }
        let kind = kind.filter(|k| !k.is_empty()).ok_or(ParseError::NoType)?;
        let (type_name, allowed): (&'static str, &[&str]) = match kind.as_str() {
            "oci" => ("oci", &["dest", "tar", "name"]),
            "docker" => ("docker", &["dest", "tar", "name"]),
            "local" => ("local", &["dest"]),
            "tar" => ("tar", &["dest"]),
            "image" => ("image", &["name", "push"]),
            "registry" => ("registry", &["name", "push"]),
            _ => return Err(ParseError::UnknownType(kind)),
        };
        let image_like = matches!(type_name, "oci" | "docker" | "image" | "registry");
        if !names.is_empty() && !allowed.contains(&"name") {
            return Err(unknown_key("name", type_name, allowed, image_like));
        }
        let mut spec = OutputSpec::of(OutputKind::Image { push: false });
        spec.names = names;
        let mut dest: Option<String> = None;
        let mut tar: Option<bool> = None;
        let mut push = type_name == "registry";
        for (key, value) in attrs {
            let known =
                allowed.contains(&key.as_str()) || (image_like && IMAGE_KEYS.contains(&&*key));
            if !known {
                return Err(unknown_key(&key, type_name, allowed, image_like));
            }
            match key.as_str() {
                "dest" => dest = Some(value),
                "tar" => tar = Some(parse_bool(&key, &value)?),
                "push" => push = parse_bool(&key, &value)?,
                "compression" => {
                    spec.compression = Some(match value.as_str() {
                        "uncompressed" => CompressionKind::Uncompressed,
                        "gzip" => CompressionKind::Gzip,
                        "zstd" => CompressionKind::Zstd,
                        _ => return Err(ParseError::Compression(value)),
                    })
                }
                "compression-level" => {
                    spec.compression_level = Some(
                        value
                            .trim()
                            .parse()
                            .map_err(|_| ParseError::Level(value.clone()))?,
                    )
                }
                "force-compression" => spec.force_compression = parse_bool(&key, &value)?,
                "oci-mediatypes" => spec.oci_mediatypes = Some(parse_bool(&key, &value)?),
                _ => return Err(unknown_key(&key, type_name, allowed, image_like)),
            }
        }
        spec.kind = match type_name {
            "oci" | "docker" => {
                let dest = match dest {
                    Some(d) if !d.is_empty() => d,
                    // buildx writes an OCI tar to stdout when there is no dest.
                    _ if type_name == "oci" && tar != Some(false) => "-".to_owned(),
                    _ => return Err(ParseError::NoDest(type_name)),
                };
                let destination = layout_destination(type_name, &dest, tar)?;
                if type_name == "oci" {
                    OutputKind::Oci(destination)
                } else {
                    OutputKind::Docker(destination)
                }
            }
            "local" => OutputKind::Local(local_dir(dest.as_deref().unwrap_or(""))?),
            "tar" => OutputKind::Tar(match dest.as_deref() {
                None | Some("" | "-") => Destination::Stdout,
                Some(d) => Destination::File(PathBuf::from(d)),
            }),
            _ => OutputKind::Image { push },
        };
        Ok(spec)
    }

    fn of(kind: OutputKind) -> OutputSpec {
        OutputSpec {
            kind,
            names: Vec::new(),
            compression: None,
            compression_level: None,
            force_compression: false,
            oci_mediatypes: None,
        }
    }

    /// Whether exporting this output needs a registry (see [`super::Exporter::push`]).
    pub fn is_push(&self) -> bool {
        matches!(self.kind, OutputKind::Image { push: true })
    }

    /// Whether this output writes an image (layers, manifest) rather than a filesystem.
    pub fn is_image(&self) -> bool {
        !matches!(self.kind, OutputKind::Local(_) | OutputKind::Tar(_))
    }

    /// Whether this output carries the image off the store (a layout, an archive, a push):
    /// layers stored uncompressed are then gzipped unless `compression=` says otherwise, as
    /// buildx compresses with gzip by default. `type=image` without `push` keeps the stored
    /// layers, like `-t`.
    pub fn compresses_by_default(&self) -> bool {
        matches!(
            self.kind,
            OutputKind::Oci(_) | OutputKind::Docker(_) | OutputKind::Image { push: true }
        )
    }

    /// The compression this output gives a layer stored uncompressed: `compression=`, else
    /// gzip for outputs that [compress by default](Self::compresses_by_default), else none
    /// (`None`: the layer stays as it is).
    pub fn layer_compression(&self) -> Option<Compression> {
        self.target_compression().or_else(|| {
            self.compresses_by_default()
                .then_some(Compression::DEFAULT_GZIP)
        })
    }

    /// The compression to convert layers to, if any was asked for: the kind with its level
    /// (`compression-level`, else the kind's default).
    pub fn target_compression(&self) -> Option<Compression> {
        let kind = self.compression.or_else(|| {
            // A level alone refers to the default compression, as in BuildKit.
            self.compression_level.map(|_| CompressionKind::Gzip)
        })?;
        Some(match kind {
            CompressionKind::Uncompressed => Compression::None,
            CompressionKind::Gzip => Compression::Gzip {
                level: self
                    .compression_level
                    .map_or(6, |l| u32::try_from(l).unwrap_or(u32::MAX)),
            },
            CompressionKind::Zstd => Compression::Zstd {
                level: self.compression_level.unwrap_or(3),
            },
        })
    }
}

impl std::str::FromStr for OutputSpec {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<OutputSpec, ParseError> {
        OutputSpec::parse(s)
    }
}

fn unknown_key(key: &str, kind: &'static str, allowed: &[&str], image: bool) -> ParseError {
    let mut known: Vec<&str> = allowed.to_vec();
    if image {
        known.extend_from_slice(IMAGE_KEYS);
    }
    ParseError::UnknownKey {
        key: key.to_owned(),
        kind,
        known: known.join(", "),
    }
}

/// Go's `strconv.ParseBool`, which buildx uses.
fn parse_bool(key: &str, value: &str) -> Result<bool, ParseError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ParseError::Bool {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
    }
}

/// The directory of a `local` output: required, not stdout, not an existing file.
fn local_dir(dest: &str) -> Result<PathBuf, ParseError> {
    if dest.is_empty() {
        return Err(ParseError::NoDest("local"));
    }
    if dest == "-" {
        return Err(ParseError::StdoutDir("local"));
    }
    let path = PathBuf::from(dest);
    if std::fs::metadata(&path).is_ok_and(|m| !m.is_dir()) {
        return Err(ParseError::DirIsFile(path));
    }
    Ok(path)
}

/// A layout output's destination: `tar=false`, an existing directory or a trailing `/` make
/// a directory; `-` is stdout; anything else a tar file.
fn layout_destination(
    kind: &'static str,
    dest: &str,
    tar: Option<bool>,
) -> Result<Destination, ParseError> {
    let path = Path::new(dest);
    let as_dir = tar == Some(false)
        || (tar.is_none() && (dest.ends_with('/') || path.is_dir() && dest != "-"));
    if as_dir {
        if dest == "-" {
            return Err(if kind == "docker" {
                ParseError::StdoutLayout
            } else {
                ParseError::StdoutDir(kind)
            });
        }
        if std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
            return Err(ParseError::DirIsFile(path.to_path_buf()));
        }
        return Ok(Destination::Dir(path.to_path_buf()));
    }
    Ok(if dest == "-" {
        Destination::Stdout
    } else {
        Destination::File(path.to_path_buf())
    })
}

/// Splits on commas as Go's `encoding/csv` does for one record: a field starting with `"`
/// runs to the closing quote (`""` is a literal quote) and may hold commas.
fn split_csv(input: &str) -> Result<Vec<String>, ParseError> {
    let mut fields = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(ParseError::Quote(input.to_owned())),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(ParseError::Quote(input.to_owned())),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> OutputSpec {
        OutputSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> ParseError {
        OutputSpec::parse(s).expect_err(s)
    }

    #[test]
    fn shorthand_paths() {
        assert_eq!(parse("out").kind, OutputKind::Local("out".into()));
        assert_eq!(parse("-").kind, OutputKind::Tar(Destination::Stdout));
        assert_eq!(
            parse("./a/b/").kind,
            OutputKind::Local(PathBuf::from("./a/b/"))
        );
    }

    #[test]
    fn oci_file_dir_and_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("exists");
        std::fs::create_dir(&existing).unwrap();
        let d = dir.path().display();
        assert_eq!(
            parse(&format!("type=oci,dest={d}/oci.tar")).kind,
            OutputKind::Oci(Destination::File(dir.path().join("oci.tar")))
        );
        // A path that does not exist yet is a tar file, as in buildx.
        assert_eq!(
            parse(&format!("type=oci,dest={d}/oci")).kind,
            OutputKind::Oci(Destination::File(dir.path().join("oci")))
        );
        assert_eq!(
            parse(&format!("type=oci,dest={d}/exists")).kind,
            OutputKind::Oci(Destination::Dir(existing.clone()))
        );
        assert_eq!(
            parse(&format!("type=oci,dest={d}/new/")).kind,
            OutputKind::Oci(Destination::Dir(PathBuf::from(format!("{d}/new/"))))
        );
        assert_eq!(
            parse(&format!("type=oci,dest={d}/layout,tar=false")).kind,
            OutputKind::Oci(Destination::Dir(dir.path().join("layout")))
        );
        // tar=true insists on a file even where a directory exists... and then the
        // directory is the file's path; writing it fails later, not here.
        assert_eq!(
            parse(&format!("type=oci,dest={d}/exists,tar=true")).kind,
            OutputKind::Oci(Destination::File(existing))
        );
        assert_eq!(parse("type=oci").kind, OutputKind::Oci(Destination::Stdout));
        assert_eq!(
            parse("type=oci,dest=-").kind,
            OutputKind::Oci(Destination::Stdout)
        );
        assert_eq!(err("type=oci,tar=false"), ParseError::NoDest("oci"));
        assert_eq!(
            err("type=oci,dest=-,tar=false"),
            ParseError::StdoutDir("oci")
        );
    }

    #[test]
    fn docker_with_names() {
        let spec = parse("type=docker,dest=img.tar,name=app:1");
        assert_eq!(
            spec.kind,
            OutputKind::Docker(Destination::File("img.tar".into()))
        );
        assert_eq!(spec.names, ["app:1"]);
        // Quoted CSV field, as buildx documents it, and the unquoted extension.
        let spec = parse(r#"type=docker,dest=-,"name=a:1,b:2""#);
        assert_eq!(spec.kind, OutputKind::Docker(Destination::Stdout));
        assert_eq!(spec.names, ["a:1", "b:2"]);
        assert_eq!(
            parse("type=docker,name=a:1,b:2,dest=x.tar").names,
            ["a:1", "b:2"]
        );
        assert_eq!(err("type=docker"), ParseError::NoDest("docker"));
        assert_eq!(
            err("type=docker,dest=-,tar=false"),
            ParseError::StdoutLayout
        );
    }

    #[test]
    fn local_and_tar() {
        assert_eq!(
            parse("type=local,dest=out").kind,
            OutputKind::Local("out".into())
        );
        assert_eq!(err("type=local"), ParseError::NoDest("local"));
        assert_eq!(err("type=local,dest=-"), ParseError::StdoutDir("local"));
        let file = tempfile::NamedTempFile::new().unwrap();
        let p = file.path().display();
        assert!(matches!(
            err(&format!("type=local,dest={p}")),
            ParseError::DirIsFile(_)
        ));
        assert!(matches!(err(&p.to_string()), ParseError::DirIsFile(_)));
        assert_eq!(
            parse("type=tar,dest=fs.tar").kind,
            OutputKind::Tar(Destination::File("fs.tar".into()))
        );
        assert_eq!(parse("type=tar").kind, OutputKind::Tar(Destination::Stdout));
        assert!(matches!(
            err("type=tar,dest=x,name=a"),
            ParseError::UnknownKey { .. }
        ));
        assert!(matches!(
            err("type=local,dest=x,compression=gzip"),
            ParseError::UnknownKey { .. }
        ));
    }

    #[test]
    fn image_and_registry() {
        let spec = parse("type=image,name=localhost:5000/a:1,push=true");
        assert_eq!(spec.kind, OutputKind::Image { push: true });
        assert!(spec.is_push());
        assert_eq!(spec.names, ["localhost:5000/a:1"]);
        assert!(!parse("type=image,name=a").is_push());
        assert!(parse("type=registry,name=a").is_push());
        assert!(!parse("type=registry,name=a,push=false").is_push());
        assert!(matches!(
            err("type=image,name=a,dest=x"),
            ParseError::UnknownKey { .. }
        ));
    }

    #[test]
    fn compression_options() {
        let spec = parse(
            "type=oci,dest=x.tar,compression=zstd,compression-level=19,force-compression=true,oci-mediatypes=true",
        );
        assert_eq!(spec.compression, Some(CompressionKind::Zstd));
        assert_eq!(spec.compression_level, Some(19));
        assert!(spec.force_compression);
        assert_eq!(spec.oci_mediatypes, Some(true));
        assert_eq!(
            spec.target_compression(),
            Some(Compression::Zstd { level: 19 })
        );
        assert_eq!(
            parse("type=oci,dest=x,compression=gzip").target_compression(),
            Some(Compression::Gzip { level: 6 })
        );
        assert_eq!(
            parse("type=oci,dest=x,compression-level=1").target_compression(),
            Some(Compression::Gzip { level: 1 })
        );
        assert_eq!(
            parse("type=docker,dest=x,compression=uncompressed").target_compression(),
            Some(Compression::None)
        );
        assert_eq!(parse("type=oci,dest=x").target_compression(), None);
        // Artifacts gzip what the store keeps uncompressed; the local store keeps it.
        for (output, want) in [
            ("type=oci,dest=x", Some(Compression::DEFAULT_GZIP)),
            ("type=docker,dest=x", Some(Compression::DEFAULT_GZIP)),
            ("type=registry,name=a", Some(Compression::DEFAULT_GZIP)),
            ("type=image,name=a", None),
            (
                "type=image,name=a,compression=zstd",
                Some(Compression::DEFAULT_ZSTD),
            ),
            (
                "type=oci,dest=x,compression=uncompressed",
                Some(Compression::None),
            ),
            ("type=tar,dest=x", None),
        ] {
            assert_eq!(parse(output).layer_compression(), want, "{output}");
        }
        assert_eq!(
            err("type=oci,dest=x,compression=lz4"),
            ParseError::Compression("lz4".into())
        );
        assert_eq!(
            err("type=oci,dest=x,compression-level=high"),
            ParseError::Level("high".into())
        );
        assert!(matches!(
            err("type=oci,dest=x,force-compression=yes"),
            ParseError::Bool { .. }
        ));
    }

    #[test]
    fn errors() {
        assert_eq!(err(""), ParseError::Empty);
        assert_eq!(err("dest=x,name=a"), ParseError::NoType);
        assert_eq!(err("type=,dest=x"), ParseError::NoType);
        assert_eq!(
            err("type=cacheonly"),
            ParseError::UnknownType("cacheonly".into())
        );
        assert_eq!(
            err("type=oci,dest=x,bogus"),
            ParseError::Field("bogus".into())
        );
        assert_eq!(
            err(r#"type=oci,"dest=x"#),
            ParseError::Quote(r#"type=oci,"dest=x"#.into())
        );
        let e = err("type=oci,dest=x,colour=red");
        assert!(e.to_string().contains("colour"), "{e}");
        assert!(e.to_string().contains("compression-level"), "{e}");
        // Keys are case-insensitive, as in buildx.
        assert_eq!(
            parse("TYPE=tar,Dest=a").kind,
            OutputKind::Tar(Destination::File("a".into()))
        );
    }
}
