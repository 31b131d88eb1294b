//! Layer compression: one streaming pass that writes the compressed blob and computes both the
//! diffID (sha256 of the uncompressed tar) and the blob digest and size; plus detection of the
//! compression of an incoming layer by its magic bytes.
//!
//! The two sha256 sums each run on a thread of their own ([`hashpipe`]), beside the encoder's
//! workers, so neither adds to the time of the writer's thread.

mod hashpipe;
mod pgzip;

use std::io::{self, Read, Write};
use std::num::NonZeroUsize;

use crate::digest::Sha256Digest;
use hashpipe::HashPipe;
use pgzip::ParallelGzEncoder;

/// Errors of compression and decompression.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// Reading the input or writing the output failed.
    #[error("compression i/o failed")]
    Io(#[source] io::Error),
    /// The zstd encoder or decoder could not be set up.
    #[error("cannot set up zstd")]
    Zstd(#[source] io::Error),
    /// A level outside the range of the algorithm.
    #[error("invalid {algorithm} level {level}")]
    InvalidLevel {
        /// `gzip` or `zstd`.
        algorithm: &'static str,
        /// The level asked for.
        level: i64,
    },
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar: the blob digest equals the diffID.
    None,
    /// Gzip (RFC 1952), compressed in parallel; `level` is 0..=9.
    Gzip {
        /// Deflate level, 0 (store) to 9 (best).
        level: u32,
    },
    /// Zstandard with multithreaded compression; `level` is 1..=22.
    Zstd {
        /// Zstandard level.
        level: i32,
    },
}

impl Compression {
    /// The usual default for OCI layers: gzip level 6, as `docker push` writes.
    pub const DEFAULT_GZIP: Compression = Compression::Gzip { level: 6 };
    /// Zstandard at its default level 3.
    pub const DEFAULT_ZSTD: Compression = Compression::Zstd { level: 3 };

    fn validate(self) -> Result<(), CompressError> {
        match self {
            Compression::Gzip { level } if level > 9 => Err(CompressError::InvalidLevel {
                algorithm: "gzip",
                level: i64::from(level),
            }),
            Compression::Zstd { level } if !(1..=22).contains(&level) => {
                Err(CompressError::InvalidLevel {
                    algorithm: "zstd",
                    level: i64::from(level),
                })
            }
            _ => Ok(()),
        }
    }
}

/// What one compression pass measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed stream (the OCI diffID).
    pub diff_id: Sha256Digest,
    /// Length of the uncompressed stream.
    pub uncompressed_size: u64,
    /// sha256 of the compressed blob.
    pub digest: Sha256Digest,
    /// Length of the compressed blob.
    pub size: u64,
}

/// A writer that counts and hashes everything passing through it (when `hash` is set; the
/// uncompressed case needs no second hash of the same bytes).
#[derive(Debug)]
struct HashingWriter<W> {
    inner: W,
    hash: Option<HashPipe>,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n])?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    None(HashingWriter<W>),
    Gzip(ParallelGzEncoder<HashingWriter<W>>),
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<W>>),
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::None(_) => "None",
            Encoder::Gzip(_) => "Gzip",
            Encoder::Zstd(_) => "Zstd",
        })
    }
}

/// Streams an uncompressed layer in, writes the compressed blob to `W`, and on
/// [`CompressWriter::finish`] reports the diffID and the blob digest and size.
#[derive(Debug)]
pub struct CompressWriter<W: Write> {
    /// The diffID's hash. Small writes (a tar writer's 512-byte headers, 8 KiB copies) are
    /// gathered in its buffers, and each full buffer goes both to the hashing thread and to
    /// the encoder, so both see large chunks: per-call overhead in zstd's multithreaded
    /// streaming API is noticeable otherwise.
    diff: HashPipe,
    enc: Encoder<W>,
}

/// Worker threads for compression: every core, at least one. Zstd output does not depend on
/// the count as long as it is at least one, and gzip output never does.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

impl<W: Write> CompressWriter<W> {
    /// A writer using every core.
    pub fn new(out: W, compression: Compression) -> Result<Self, CompressError> {
        Self::with_threads(out, compression, default_threads())
    }

    /// A writer with an explicit worker count (clamped to at least one); the output bytes are
    /// the same for every count.
    pub fn with_threads(
        out: W,
        compression: Compression,
        threads: usize,
    ) -> Result<Self, CompressError> {
        compression.validate()?;
        let sink = HashingWriter {
            inner: out,
            hash: match compression {
                Compression::None => None,
                _ => Some(HashPipe::new(hashpipe::SMALL_POOL).map_err(CompressError::Io)?),
            },
        };
        let threads = threads.max(1);
        let enc = match compression {
            Compression::None => Encoder::None(sink),
            Compression::Gzip { level } => {
                Encoder::Gzip(ParallelGzEncoder::new(sink, level, threads))
            }
            Compression::Zstd { level } => {
                let mut z =
                    zstd::stream::write::Encoder::new(sink, level).map_err(CompressError::Zstd)?;
                let workers = u32::try_from(threads).unwrap_or(u32::MAX);
                z.multithread(workers).map_err(CompressError::Zstd)?;
                z.include_checksum(true).map_err(CompressError::Zstd)?;
                Encoder::Zstd(z)
            }
        };
        Ok(Self {
            diff: HashPipe::new(hashpipe::POOL).map_err(CompressError::Io)?,
            enc,
        })
    }

    /// Passes all of `buf` to the encoder.
    fn encode(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.enc {
            Encoder::None(s) => s.write_all(buf),
            Encoder::Gzip(g) => g.write_all(buf),
            Encoder::Zstd(z) => z.write_all(buf),
        }
    }

    /// Hands the gathered bytes to the hashing thread and the encoder.
    fn ship(&mut self) -> io::Result<()> {
        if let Some(chunk) = self.diff.ship()? {
            self.encode(&chunk)?;
        }
        Ok(())
    }

    /// Ends the stream and returns the sink with the digests.
    pub fn finish(mut self) -> Result<(W, LayerDigests), CompressError> {
        self.ship().map_err(CompressError::Io)?;
        let sink = match self.enc {
            Encoder::None(s) => s,
            Encoder::Gzip(g) => g.finish().map_err(CompressError::Io)?,
            Encoder::Zstd(z) => z.finish().map_err(CompressError::Io)?,
        };
        let (diff_id, uncompressed_size) = self.diff.finish().map_err(CompressError::Io)?;
        let diff_id = Sha256Digest::from_bytes(diff_id);
        let (digest, size) = match sink.hash {
            Some(h) => {
                let (digest, size) = h.finish().map_err(CompressError::Io)?;
                (Sha256Digest::from_bytes(digest), size)
            }
            None => (diff_id, uncompressed_size),
        };
        let digests = LayerDigests {
            diff_id,
            uncompressed_size,
            digest,
            size,
        };
        Ok((sink.inner, digests))
    }
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (n, full) = self.diff.fill(buf)?;
        if let Some(chunk) = full {
            self.encode(&chunk)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ship()?;
        // Never ask an encoder to flush: that would end a zstd block (or cut a gzip block)
        // where the caller happened to flush and change the blob digest. Only the sink is
        // flushed.
        match &mut self.enc {
            Encoder::None(s) => s.flush(),
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.get_mut().flush(),
        }
    }
}

/// Compresses all of `input` into `out` in one pass; returns the sink and the digests.
pub fn compress<R: Read, W: Write>(
    mut input: R,
    out: W,
    compression: Compression,
) -> Result<(W, LayerDigests), CompressError> {
    let mut w = CompressWriter::new(out, compression)?;
    io::copy(&mut input, &mut w).map_err(CompressError::Io)?;
    w.finish()
}

/// The compression of a stream, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// Gzip magic `1f 8b`.
    Gzip,
    /// Zstandard frame magic `28 b5 2f fd`.
    Zstd,
    /// Anything else: taken as uncompressed.
    None,
}

/// Tells the compression from the leading bytes of a stream.
pub fn detect(prefix: &[u8]) -> Detected {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Detected::Gzip
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Detected::Zstd
    } else {
        Detected::None
    }
}

/// Wraps `input` in the decoder its magic bytes call for (gzip, zstd or none).
pub fn decompressed_reader<'a, R: Read + 'a>(
    mut input: R,
) -> Result<Box<dyn Read + 'a>, CompressError> {
    // Read the magic bytes fully: a pipe may hand them over one at a time.
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match input.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CompressError::Io(e)),
        }
    }
    let prefix = magic[..got].to_vec();
    let kind = detect(&prefix);
    let joined = io::Cursor::new(prefix).chain(input);
    Ok(match kind {
        // Multi-member gzip (pigz -i, concatenated files) is legal and must read to the end.
        Detected::Gzip => Box::new(flate2::read::MultiGzDecoder::new(joined)),
        Detected::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(io::BufReader::new(joined))
                .map_err(CompressError::Zstd)?,
        ),
        Detected::None => Box::new(joined),
    })
}

#[cfg(test)]
mod tests;
