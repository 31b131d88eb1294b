//! Exporters behind `rbuild build --output/--push/--iidfile/--metadata-file`: a built image,
//! given by its manifest digest in the local store, written as an OCI layout (tar or
//! directory), a `docker load`-able archive, its final filesystem (directory or tar), or
//! pushed to a registry.
//!
//! The layouts and archives come from [`crate::layout`] (one writer for `rbuild save` and
//! for builds); the filesystem from [`crate::layer::apply`]; pushes from
//! [`crate::registry::RegistryClient::push_image`]. Outputs asking for other layer
//! compression or media types get a variant manifest (see `convert.rs`). Files are written
//! to a temp file beside the destination and renamed into place, so a failed export leaves
//! nothing half written under the requested name.
//!
//! ```no_run
//! # use rbuild_image::export::{Exporter, OutputSpec};
//! # fn f(store: &rbuild_image::local::ImageStore, manifest: &rbuild_cache::Digest) {
//! let spec = OutputSpec::parse("type=oci,dest=out/oci.tar,compression=zstd").unwrap();
//! let report = Exporter::new(store)
//!     .tags(&["app:1".to_owned()])
//!     .export(manifest, &spec)
//!     .unwrap();
//! println!("{}", report.manifest.digest);
//! # }
//! ```

mod convert;
mod metadata;
mod push;
mod rootfs;
mod spec;

use std::io::{self, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rbuild_cache::{ContentError, Digest, StoreError};

pub use crate::layout::Flavor;
pub use metadata::{metadata_json, write_iidfile, write_metadata_file};
pub use spec::{CompressionKind, Destination, OutputKind, OutputSpec, ParseError};

use crate::compress::CompressError;
use crate::layer::{ApplyError, DiffError};
use crate::layout::{ExportError, ExportImage, image_for, plan, write_dir_with, write_tar_with};
use crate::local::{ImageStore, LocalError, NewImage, normalize_tag};
use crate::oci::Descriptor;
use crate::registry::{PushResult, ReferenceError, RegistryError};

/// Errors of an export.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layout(#[from] ExportError),
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write to stdout")]
    Stdout(#[source] io::Error),
    #[error("refusing to write a {0} output to a terminal: give dest= or redirect stdout")]
    Terminal(&'static str),
    #[error("type=tar writes a file, not the directory {0}")]
    TarToDir(PathBuf),
    #[error("destination {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot apply layer {layer}")]
    Apply {
        layer: Digest,
        #[source]
        source: ApplyError,
    },
    #[error("cannot write the filesystem tar")]
    Tar(#[source] DiffError),
    #[error("cannot recompress layer {layer}")]
    Convert {
        layer: Digest,
        #[source]
        source: io::Error,
    },
    #[error("cannot compress layer")]
    Compress(#[source] CompressError),
    #[error("layer {layer} unpacks to {actual}, not its diffID {expected}")]
    DiffId {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer media type {0:?} is not one rbuild can convert")]
    UnknownLayer(String),
    #[error("zstd layers need OCI media types (oci-mediatypes=true)")]
    ZstdDockerMediaTypes,
    #[error("cannot record a converted layer: {0}")]
    Record(String),
    #[error("{0} needs a registry: use Exporter::push")]
    NeedsPush(&'static str),
    #[error("a push needs an image name (name= or -t)")]
    NoName,
    #[error("invalid image name {name:?}")]
    Name {
        name: String,
        #[source]
        source: ReferenceError,
    },
    #[error("cannot push {name}")]
    Push {
        name: String,
        #[source]
        source: RegistryError,
    },
    #[error("cannot encode the metadata file")]
    Metadata(#[source] serde_json::Error),
}

/// Byte progress of an export: layers unpacked or converted, blobs written or pushed.
///
/// Any `Fn(u64)` is one (it is called with each chunk's byte count).
pub trait Progress {
    /// A new phase starts (`"writing oci"`, `"pushing"`); `total` bytes when known.
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    /// `bytes` more bytes done in the current phase.
    fn advance(&self, bytes: u64);
}

impl<F: Fn(u64)> Progress for F {
    fn advance(&self, bytes: u64) {
        self(bytes)
    }
}

/// Progress that reports nothing.
fn no_progress(_: u64) {}

/// Bytes gathered before they are passed on: renderers want coarse counts, and readers
/// report every 8 KiB chunk.
const COALESCE: u64 = 1 << 20;

/// Forwards progress in steps of at least [`COALESCE`] bytes; the rest goes out when a
/// phase starts and when the export ends.
struct Coalesced<'a> {
    inner: &'a (dyn Progress + Sync),
    pending: AtomicU64,
}

impl<'a> Coalesced<'a> {
    fn new(inner: &'a (dyn Progress + Sync)) -> Self {
        Coalesced {
            inner,
            pending: AtomicU64::new(0),
        }
    }

    fn flush(&self) {
        let pending = self.pending.swap(0, Ordering::Relaxed);
        if pending > 0 {
            self.inner.advance(pending);
        }
    }
}

impl Progress for Coalesced<'_> {
    fn start(&self, phase: &str, total: Option<u64>) {
        self.flush();
        self.inner.start(phase, total);
    }

    fn advance(&self, bytes: u64) {
        let pending = self.pending.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if pending >= COALESCE {
            self.flush();
        }
    }
}

/// Reports the bytes read through it.
pub(crate) struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<'a, R> ProgressReader<'a, R> {
    pub(crate) fn new(inner: R, progress: &'a dyn Progress) -> Self {
        ProgressReader { inner, progress }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.progress.advance(n as u64);
        }
        Ok(n)
    }
}

/// Reports the bytes written through it.
pub(crate) struct ProgressWriter<'a, W> {
    inner: W,
    progress: &'a dyn Progress,
}

impl<'a, W> ProgressWriter<'a, W> {
    pub(crate) fn new(inner: W, progress: &'a dyn Progress) -> Self {
        ProgressWriter { inner, progress }
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What an export wrote: the image as exported (for `--iidfile` and `--metadata-file`).
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The manifest exported: the stored one, or a variant with converted layers.
    pub manifest: Descriptor,
    /// The config digest: the image id.
    pub config: Digest,
    /// Full names the image was exported (and tagged, pushed) under.
    pub names: Vec<String>,
    /// One per name, for pushes.
    pub pushed: Vec<PushResult>,
}

/// Exports images of one store. Cheap to build per export.
pub struct Exporter<'a> {
    store: &'a ImageStore,
    tags: Vec<String>,
    progress: Coalesced<'a>,
}

impl std::fmt::Debug for Exporter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl<'a> Exporter<'a> {
    pub fn new(store: &'a ImageStore) -> Exporter<'a> {
        Exporter {
            store,
            tags: Vec::new(),
            progress: Coalesced::new(&no_progress),
        }
    }

    /// The build's `-t` names: what outputs without `name=` are named (as buildx does).
    pub fn tags(mut self, tags: &[String]) -> Exporter<'a> {
        self.tags = tags.to_vec();
        self
    }

    pub fn progress(mut self, progress: &'a (dyn Progress + Sync)) -> Exporter<'a> {
        self.progress = Coalesced::new(progress);
        self
    }

    /// The normalised names of an output: its `name=` values, else the tags.
    fn names(&self, spec: &OutputSpec) -> Result<Vec<String>, OutputError> {
        let given = if spec.names.is_empty() {
            &self.tags
        } else {
            &spec.names
        };
        let mut out: Vec<String> = Vec::new();
        for name in given {
            let full = normalize_tag(name).map_err(LocalError::from)?;
            if !out.contains(&full) {
                out.push(full);
            }
        }
        Ok(out)
    }

    /// The manifest to export for `spec` (converted if it asks for it).
    fn prepare(&self, manifest: &Digest, spec: &OutputSpec) -> Result<Digest, OutputError> {
        if !spec.is_image() {
            return Ok(manifest.clone());
        }
        convert::prepare(
            self.store,
            manifest,
            convert::Variant {
                compression: spec.target_compression(),
                uncompressed: spec.layer_compression(),
                force: spec.force_compression,
                oci_mediatypes: spec.oci_mediatypes,
            },
            &self.progress,
        )
    }

    fn report(&self, manifest: &Digest, names: Vec<String>) -> Result<ExportReport, OutputError> {
        let image = image_for(self.store, manifest, &[])?;
        let mut descriptor = image.manifest;
        descriptor.platform = None;
        Ok(ExportReport {
            manifest: descriptor,
            config: image.config.digest,
            names,
            pushed: Vec::new(),
        })
    }

    /// The report of the stored image under the tags, with nothing written: what
    /// `--iidfile` and `--metadata-file` describe when a build has no `--output`.
    pub fn describe(&self, manifest: &Digest) -> Result<ExportReport, OutputError> {
        let names = self.names(&OutputSpec::parse("type=image")?)?;
        self.report(manifest, names)
    }

    /// Writes every output that needs no registry; `type=image` without `push` records the
    /// names in the local store.
    pub fn export(
        &self,
        manifest: &Digest,
        spec: &OutputSpec,
    ) -> Result<ExportReport, OutputError> {
        if spec.is_push() {
            return Err(OutputError::NeedsPush("push=true"));
        }
        // Blobs written for this export (a variant manifest, converted layers) are not yet
        // owned by anything; keep prune out until they are written out.
        let _gc = self.store.store().gc_guard()?;
        let names = self.names(spec)?;
        let exported = self.prepare(manifest, spec)?;
        let progress = &self.progress;
        let result = self.write(&exported, &names, spec, progress);
        progress.flush();
        result?;
        self.report(&exported, names)
    }

    fn write(
        &self,
        exported: &Digest,
        names: &[String],
        spec: &OutputSpec,
        progress: &dyn Progress,
    ) -> Result<(), OutputError> {
        match &spec.kind {
            OutputKind::Oci(dest) | OutputKind::Docker(dest) => {
                let flavor = if matches!(spec.kind, OutputKind::Oci(_)) {
                    Flavor::Oci
                } else {
                    Flavor::Docker
                };
                let images = [image_for(self.store, exported, names)?];
                let total = images[0].layers.iter().map(|l| l.size).sum::<u64>()
                    + images[0].config.size
                    + images[0].manifest.size;
                progress.start(&format!("writing {}", spec.kind.name()), Some(total));
                write_layout_to(self.store, &images, flavor, dest, progress)?;
            }
            OutputKind::Local(dir) => rootfs::write_local(self.store, exported, dir, progress)?,
            OutputKind::Tar(dest) => match dest {
                Destination::File(path) => write_file(path, |w| {
                    rootfs::write_tar(self.store, exported, w, progress)
                })?,
                Destination::Stdout => write_stdout("tar", |w| {
                    rootfs::write_tar(self.store, exported, w, progress)
                })?,
                Destination::Dir(dir) => return Err(OutputError::TarToDir(dir.clone())),
            },
            OutputKind::Image { .. } => self.record(exported, names)?,
        }
        Ok(())
    }

    /// Tags `names` in the local store (the image, or its variant, becomes a stored image).
    fn record(&self, manifest: &Digest, names: &[String]) -> Result<(), OutputError> {
        if names.is_empty() {
            return Ok(());
        }
        self.store.record_images(&[NewImage {
            manifest: manifest.clone(),
            tags: names.to_vec(),
        }])?;
        Ok(())
    }
}

/// The manifest to push or save for a stored image: its layers as stored, except that
/// layers the store keeps uncompressed are gzipped (registries and `docker load` users
/// expect gzip, and the store keeps built layers uncompressed). Converted blobs are
/// remembered, so a second push or save converts nothing; the config and with it the
/// image id never change.
///
/// The returned manifest may be a variant that nothing references yet: hold the store's
/// GC guard until it has been used.
pub fn distributable(
    store: &ImageStore,
    manifest: &Digest,
    progress: &dyn Progress,
) -> Result<Digest, OutputError> {
    convert::prepare(store, manifest, convert::Variant::DISTRIBUTABLE, progress)
}

/// `rbuild save`: the images `names` select (see [`crate::layout::plan`]) as one docker
/// archive or OCI layout, to a file (atomically), a directory or stdout, with uncompressed
/// layers gzipped (see [`distributable`]).
pub fn save(
    store: &ImageStore,
    names: &[String],
    flavor: Flavor,
    dest: &Destination,
) -> Result<(), OutputError> {
    let _gc = store.store().gc_guard()?;
    let mut images = plan(store, names)?;
    for image in &mut images {
        let manifest = distributable(store, &image.manifest.digest, &no_progress)?;
        if manifest != image.manifest.digest {
            *image = image_for(store, &manifest, &image.names)?;
        }
    }
    write_layout_to(store, &images, flavor, dest, &no_progress)
}

/// Writes a layout or archive of `images` to its destination.
fn write_layout_to(
    store: &ImageStore,
    images: &[ExportImage],
    flavor: Flavor,
    dest: &Destination,
    progress: &dyn Progress,
) -> Result<(), OutputError> {
    let report = |n: u64| progress.advance(n);
    let kind = match flavor {
        Flavor::Oci => "oci",
        Flavor::Docker => "docker",
    };
    match dest {
        Destination::Dir(dir) => write_dir_with(store, images, flavor, dir, &report)?,
        Destination::File(path) => write_file(path, |w| {
            write_tar_with(store, images, flavor, w, &report).map_err(OutputError::from)
        })?,
        Destination::Stdout => write_stdout(kind, |w| {
            write_tar_with(store, images, flavor, w, &report).map_err(OutputError::from)
        })?,
    }
    Ok(())
}

/// Writes a file through `f` into a temp file beside `path`, then renames it into place.
fn write_file<T>(
    path: &Path,
    f: impl FnOnce(io::BufWriter<tempfile::NamedTempFile>) -> Result<T, OutputError>,
) -> Result<(), OutputError>
where
    T: IntoTempFile,
{
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_err = |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(io_err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "destination is a directory",
        )));
    }
    std::fs::create_dir_all(parent).map_err(io_err)?;
    let temp = tempfile::Builder::new()
        .prefix(".rbuild-export-")
        .tempfile_in(parent)
        .map_err(io_err)?;
    let written = f(io::BufWriter::new(temp))?;
    let temp = written.into_temp_file().map_err(io_err)?;
    temp.as_file().sync_all().map_err(io_err)?;
    temp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// What a writer chain hands back at the end: the temp file inside it.
trait IntoTempFile {
    fn into_temp_file(self) -> io::Result<tempfile::NamedTempFile>;
}

impl IntoTempFile for io::BufWriter<tempfile::NamedTempFile> {
    fn into_temp_file(self) -> io::Result<tempfile::NamedTempFile> {
        self.into_inner().map_err(|e| e.into_error())
    }
}

impl<W: IntoTempFile> IntoTempFile for ProgressWriter<'_, W> {
    fn into_temp_file(self) -> io::Result<tempfile::NamedTempFile> {
        self.into_inner().into_temp_file()
    }
}

/// Writes to stdout through `f`, refusing a terminal as buildx does.
fn write_stdout<T>(
    kind: &'static str,
    f: impl FnOnce(io::BufWriter<io::Stdout>) -> Result<T, OutputError>,
) -> Result<(), OutputError>
where
    T: Write,
{
    let stdout = io::stdout();
    if stdout.is_terminal() {
        return Err(OutputError::Terminal(kind));
    }
    let mut out = f(io::BufWriter::new(stdout))?;
    out.flush().map_err(OutputError::Stdout)
}
