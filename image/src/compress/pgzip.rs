//! Parallel gzip in the style of pigz: the input is cut into fixed-size blocks, each block is
//! compressed on rayon as an independent raw-deflate stream (primed with the previous 32 KiB of
//! input as dictionary) ending in a sync flush, and the pieces are concatenated into one gzip
//! member. The block size is a constant, so the output never depends on the thread count.

use std::io::{self, Write};

use flate2::{Compress, FlushCompress, Status};
use rayon::prelude::*;

/// Input bytes per independently compressed block (pigz uses 128 KiB too).
const BLOCK_SIZE: usize = 128 * 1024;
/// Deflate's window: the dictionary handed to each block is this much of the preceding input.
const DICT_SIZE: usize = 32 * 1024;
/// A final, empty, fixed-Huffman deflate block: BFINAL=1, BTYPE=01, end-of-block code.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

/// Streaming parallel gzip encoder; call [`ParallelGzEncoder::finish`] to write the trailer.
#[derive(Debug)]
pub(crate) struct ParallelGzEncoder<W: Write> {
    out: Option<W>,
    level: u32,
    /// Blocks are gathered into a batch this long before being compressed together.
    batch_blocks: usize,
    /// Pending input: the dictionary tail of already-compressed input, then the new bytes.
    buf: Vec<u8>,
    /// How many leading bytes of `buf` are dictionary only (already compressed).
    dict_len: usize,
    crc: crc32fast::Hasher,
    total_in: u64,
    header_written: bool,
}

impl<W: Write> ParallelGzEncoder<W> {
    pub(crate) fn new(out: W, level: u32, threads: usize) -> Self {
        let batch_blocks = threads.max(1) * 4;
        Self {
            out: Some(out),
            level: level.min(9),
            batch_blocks,
            buf: Vec::with_capacity(DICT_SIZE + batch_blocks * BLOCK_SIZE),
            dict_len: 0,
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            header_written: false,
        }
    }

    fn out(&mut self) -> io::Result<&mut W> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))
    }

    fn write_header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        // XFL follows RFC 1952: 2 = slowest/best, 4 = fastest. No name, no mtime, OS unknown,
        // so the header is the same on every machine.
        let xfl = match self.level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        let header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff];
        self.out()?.write_all(&header)?;
        self.header_written = true;
        Ok(())
    }

    /// Compresses every complete block in `buf` (all of it when `all` is set).
    fn flush_blocks(&mut self, all: bool) -> io::Result<()> {
        self.write_header()?;
        let data_len = self.buf.len() - self.dict_len;
        let nblocks = if all {
            data_len.div_ceil(BLOCK_SIZE)
        } else {
            data_len / BLOCK_SIZE
        };
        if nblocks == 0 {
            return Ok(());
        }
        let end = if all {
            self.buf.len()
        } else {
            self.dict_len + nblocks * BLOCK_SIZE
        };
        let level = self.level;
        let dict_len = self.dict_len;
        let buf = &self.buf;
        let pieces: Vec<io::Result<(Vec<u8>, crc32fast::Hasher)>> = (0..nblocks)
            .into_par_iter()
            .map(|i| {
                let start = dict_len + i * BLOCK_SIZE;
                let stop = (start + BLOCK_SIZE).min(end);
                let dict = &buf[start.saturating_sub(DICT_SIZE)..start];
                let data = &buf[start..stop];
                let mut crc = crc32fast::Hasher::new();
                crc.update(data);
                Ok((deflate_block(level, dict, data)?, crc))
            })
            .collect();
        for piece in pieces {
            let (bytes, crc) = piece?;
            self.crc.combine(&crc);
            self.out()?.write_all(&bytes)?;
        }
        // Keep only the last 32 KiB of compressed input as the next block's dictionary.
        let keep_from = end.saturating_sub(DICT_SIZE);
        self.buf.drain(..keep_from);
        self.dict_len = self.buf.len();
        Ok(())
    }

    /// Compresses what is left, writes the final block and trailer, and returns the sink.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.flush_blocks(true)?;
        let crc = self.crc.clone().finalize();
        // ISIZE is the input length modulo 2^32 (RFC 1952).
        let isize = (self.total_in & 0xffff_ffff) as u32;
        let out = self.out()?;
        out.write_all(&FINAL_EMPTY_BLOCK)?;
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&isize.to_le_bytes())?;
        out.flush()?;
        self.out
            .take()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let batch_bytes = self.batch_blocks * BLOCK_SIZE;
        let room = (self.dict_len + batch_bytes).saturating_sub(self.buf.len());
        let n = data.len().min(room.max(1));
        self.buf.extend_from_slice(&data[..n]);
        self.total_in += n as u64;
        if self.buf.len() - self.dict_len >= batch_bytes {
            self.flush_blocks(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing mid-stream would cut a short block and make the output depend on when the
        // caller flushed; only the underlying sink is flushed.
        self.out()?.flush()
    }
}

/// Raw-deflates `data` with `dict` as preset dictionary, ending byte-aligned with a sync flush
/// (never a final block), so independently compressed blocks can be concatenated.
fn deflate_block(level: u32, dict: &[u8], data: &[u8]) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut pos = 0usize;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(&data[pos..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        pos += (c.total_in() - before) as usize;
        if status == Status::StreamEnd {
            return Err(io::Error::other("deflate ended a non-final block"));
        }
        // zlib's contract: the sync flush is complete once it returns with output space left.
        if pos == data.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}
