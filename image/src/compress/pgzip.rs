//! Parallel gzip in the style of pigz: the input is cut into fixed-size blocks, each block is
//! compressed on rayon as an independent raw-deflate stream (primed with the previous 32 KiB of
//! input as dictionary) ending in a sync flush, and the pieces are concatenated into one gzip
//! member. The block size is a constant, so the output never depends on the thread count.
//!
//! Blocks that cannot shrink (random bytes, or data that is already compressed: the usual
//! bulk of large layers) are written as stored deflate blocks instead of being run through
//! the compressor, which is slowest on exactly such data (about 20 MiB/s per core at level
//! 6, against memory speed for a copy). Whether a block is stored depends on its bytes
//! alone, so the output is still a function of the input (see [`incompressible`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};

use flate2::{Compress, FlushCompress, Status};

/// Input bytes per independently compressed block (pigz uses 128 KiB too).
const BLOCK_SIZE: usize = 128 * 1024;
/// Deflate's window: the dictionary handed to each block is this much of the preceding input.
const DICT_SIZE: usize = 32 * 1024;
/// A final, empty, fixed-Huffman deflate block: BFINAL=1, BTYPE=01, end-of-block code.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

/// The result of one block: its deflate bytes and the CRC of its input.
type BlockResult = io::Result<(Vec<u8>, crc32fast::Hasher)>;

/// Streaming parallel gzip encoder; call [`ParallelGzEncoder::finish`] to write the trailer.
///
/// Each full block is handed to rayon at once and its result collected in order, with up to
/// `max_in_flight` blocks outstanding: no batch barrier, so one slow block never idles the
/// other threads.
#[derive(Debug)]
pub(crate) struct ParallelGzEncoder<W: Write> {
    out: Option<W>,
    level: u32,
    max_in_flight: usize,
    /// The dictionary tail of already-submitted input, then the block being filled.
    buf: Vec<u8>,
    /// How many leading bytes of `buf` are dictionary only.
    dict_len: usize,
    pending: VecDeque<Receiver<BlockResult>>,
    crc: crc32fast::Hasher,
    total_in: u64,
    header_written: bool,
}

impl<W: Write> ParallelGzEncoder<W> {
    pub(crate) fn new(out: W, level: u32, threads: usize) -> Self {
        Self {
            out: Some(out),
            level: level.min(9),
            // 16 blocks (2 MiB of input) per thread queued ahead: enough that the workers
            // keep going while a busy machine leaves this thread unscheduled for a while.
            max_in_flight: threads.max(1) * 16,
            buf: Vec::with_capacity(DICT_SIZE + BLOCK_SIZE),
            dict_len: 0,
            pending: VecDeque::new(),
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

    /// Hands the block in `buf` to a worker and keeps its last 32 KiB as the next dictionary.
    fn submit(&mut self) -> io::Result<()> {
        self.write_header()?;
        if self.buf.len() == self.dict_len {
            return Ok(());
        }
        let mut next = Vec::with_capacity(DICT_SIZE + BLOCK_SIZE);
        next.extend_from_slice(&self.buf[self.buf.len().saturating_sub(DICT_SIZE)..]);
        let job = std::mem::replace(&mut self.buf, next);
        let dict_len = std::mem::replace(&mut self.dict_len, self.buf.len());
        let level = self.level;
        let work = move || -> BlockResult {
            let (dict, data) = job.split_at(dict_len);
            let mut crc = crc32fast::Hasher::new();
            crc.update(data);
            Ok((deflate_block(level, dict, data)?, crc))
        };
        let (tx, rx) = sync_channel(1);
        if rayon::current_thread_index().is_some() {
            // On a pool thread, blocking on our own jobs could starve the pool: work inline.
            let _ = tx.send(work());
        } else {
            rayon::spawn(move || {
                // The receiver is gone only if the encoder was dropped mid-stream.
                let _ = tx.send(work());
            });
        }
        self.pending.push_back(rx);
        self.collect(false)
    }

    /// Writes finished blocks in order; waits while too many are outstanding (or for all).
    fn collect(&mut self, all: bool) -> io::Result<()> {
        while let Some(front) = self.pending.front() {
            let wait = all || self.pending.len() > self.max_in_flight;
            let result = if wait {
                front
                    .recv()
                    .map_err(|_| io::Error::other("gzip worker died"))?
            } else {
                match front.try_recv() {
                    Ok(r) => r,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        return Err(io::Error::other("gzip worker died"));
                    }
                }
            };
            self.pending.pop_front();
            let (bytes, crc) = result?;
            self.crc.combine(&crc);
            self.out()?.write_all(&bytes)?;
        }
        Ok(())
    }

    /// Compresses what is left, writes the final block and trailer, and returns the sink.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.submit()?;
        self.collect(true)?;
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
        // Blocks are cut at fixed input offsets, whatever the sizes of the writes.
        let room = self.dict_len + BLOCK_SIZE - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.total_in += n as u64;
        if self.buf.len() - self.dict_len == BLOCK_SIZE {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Cutting a short block here would make the output depend on when the caller
        // flushed; only finished blocks and the underlying sink are flushed.
        self.collect(false)?;
        self.out()?.flush()
    }
}

thread_local! {
    /// Each worker thread's deflate state, reset between blocks rather than allocated anew
    /// (a level-6 state is a few hundred KiB that would otherwise be set up 8,192 times per GiB).
    static DEFLATE: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
}

/// Most bytes of one stored deflate block (its LEN field is 16 bits).
const STORED_MAX: usize = 0xffff;

/// Whether `data` is so close to uniformly distributed bytes that deflate cannot shrink it
/// meaningfully, so storing it costs next to nothing in size.
///
/// The test is Pearson's chi-squared statistic of the byte histogram against the uniform
/// one, in integers (no floating point, so every machine decides alike): chi² below
/// `T·N` means the byte distribution's Kullback-Leibler divergence from uniform, which is
/// what Huffman coding of literals can gain, is below about `T / (2 ln 2)` bits per byte
/// (chi² overestimates it for larger deviations, so the test errs towards compressing).
/// With `T = 1/16` that is 0.045 bits, at most 0.6 % of the block. Random data of a full
/// block has chi² ≈ 255, far below the bound of 8,192; text, code, tar headers and
/// binaries are far above it. What the test cannot see is repetition of high-entropy data
/// within one block (the same compressed file twice in 128 KiB): such a block is stored
/// too, which costs size, never correctness.
pub(crate) fn incompressible(data: &[u8]) -> bool {
    // In a short block the histogram says little, and the block hardly matters.
    if data.len() < 4096 {
        return false;
    }
    let mut counts = [0u32; 256];
    // Four interleaved histograms: one would serialise on store-to-load forwarding when
    // neighbouring bytes are equal.
    let mut parts = [[0u32; 256]; 4];
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        parts[0][usize::from(c[0])] += 1;
        parts[1][usize::from(c[1])] += 1;
        parts[2][usize::from(c[2])] += 1;
        parts[3][usize::from(c[3])] += 1;
    }
    for &b in chunks.remainder() {
        parts[0][usize::from(b)] += 1;
    }
    for (i, count) in counts.iter_mut().enumerate() {
        *count = parts.iter().map(|p| p[i]).sum();
    }
    // chi² = Σ (c − N/256)² / (N/256) = Σ (256c − N)² / (256 N); chi² < N/16 becomes
    // Σ (256c − N)² < 16 N².
    let n = data.len() as u128;
    let sum: u128 = counts
        .iter()
        .map(|&c| {
            let d = (256 * u128::from(c)).abs_diff(n);
            d * d
        })
        .sum();
    sum < 16 * n * n
}

/// `data` as stored (uncompressed) deflate blocks, none final. Stored blocks start and end
/// on a byte boundary, as every block of this encoder does.
fn stored_blocks(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5 * data.len().div_ceil(STORED_MAX));
    for piece in data.chunks(STORED_MAX) {
        // BFINAL=0, BTYPE=00, padded to the byte boundary; then LEN and its complement.
        let len = u16::try_from(piece.len()).unwrap_or(u16::MAX);
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// Raw-deflates `data` with `dict` as preset dictionary, ending byte-aligned with a sync flush
/// (never a final block), so independently compressed blocks can be concatenated.
/// Incompressible data is stored instead (the dictionary does not matter then: a decoder's
/// window holds the stored bytes as it holds any others).
fn deflate_block(level: u32, dict: &[u8], data: &[u8]) -> io::Result<Vec<u8>> {
    if level > 0 && incompressible(data) {
        return Ok(stored_blocks(data));
    }
    DEFLATE.with_borrow_mut(|slot| {
        let c = match slot {
            Some((l, c)) if *l == level => {
                // deflateReset: a fresh stream with the same parameters, same output.
                c.reset();
                c
            }
            other => {
                let (_, c) =
                    other.insert((level, Compress::new(flate2::Compression::new(level), false)));
                c
            }
        };
        deflate_with(c, dict, data)
    })
}

fn deflate_with(c: &mut Compress, dict: &[u8], data: &[u8]) -> io::Result<Vec<u8>> {
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
