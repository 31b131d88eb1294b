//! SHA-256 on a thread of its own, fed in whole buffers, so hashing a layer runs beside its
//! compression instead of in series with it on the writer's thread.
//!
//! Buffers go to the thread behind an `Arc` (the writer hands the same bytes to the encoder
//! without copying them again) and come back once hashed, so a handful of buffers are
//! reused for the whole stream and memory stays flat.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

/// Bytes per buffer handed to the hashing thread.
pub(crate) const CHUNK: usize = 1 << 20;
/// Buffers in use at most (being filled, queued, hashed) for the diffID's hash: bounds memory
/// to `POOL * CHUNK`. Generous, so a hashing thread that the scheduler leaves waiting for a
/// while (on a busy machine) does not stall the writer and with it the encoder's workers.
pub(crate) const POOL: usize = 12;
/// The same for the compressed stream, about a third as long.
pub(crate) const SMALL_POOL: usize = 4;

type Chunk = Arc<Vec<u8>>;

/// A running SHA-256 whose work happens on a helper thread.
#[derive(Debug)]
pub(crate) struct HashPipe {
    tx: Option<SyncSender<Chunk>>,
    back: Receiver<Chunk>,
    pool: usize,
    worker: Option<JoinHandle<(Sha256, u64)>>,
    free: Vec<Vec<u8>>,
    allocated: usize,
    buf: Vec<u8>,
}

fn died() -> io::Error {
    io::Error::other("hashing thread died")
}

impl HashPipe {
    /// A pipe using at most `pool` buffers (at least two).
    pub(crate) fn new(pool: usize) -> io::Result<HashPipe> {
        let pool = pool.max(2);
        let (tx, rx) = sync_channel::<Chunk>(pool);
        // Room for every buffer, so handing one back never blocks or drops it.
        let (back_tx, back) = sync_channel::<Chunk>(pool);
        let worker = std::thread::Builder::new()
            .name("rbuild-sha256".into())
            .spawn(move || {
                let mut hash = Sha256::new();
                let mut len = 0u64;
                for chunk in rx {
                    hash.update(chunk.as_slice());
                    len += chunk.len() as u64;
                    // The writer may be gone (dropped mid-stream); then nobody reuses it.
                    let _ = back_tx.try_send(chunk);
                }
                (hash, len)
            })?;
        Ok(HashPipe {
            tx: Some(tx),
            back,
            pool,
            worker: Some(worker),
            free: Vec::new(),
            allocated: 1,
            buf: Vec::with_capacity(CHUNK),
        })
    }

    /// Takes buffers the thread is done with.
    fn reclaim(&mut self, chunk: Chunk) {
        match Arc::try_unwrap(chunk) {
            Ok(mut v) => {
                v.clear();
                self.free.push(v);
            }
            // Still shared (cannot happen with the writers here): let it go.
            Err(_) => self.allocated -= 1,
        }
    }

    /// An empty buffer: a free one, a new one while under the pool size, or the next one
    /// the thread hands back.
    fn next_buffer(&mut self) -> io::Result<Vec<u8>> {
        while let Ok(chunk) = self.back.try_recv() {
            self.reclaim(chunk);
        }
        loop {
            if let Some(v) = self.free.pop() {
                return Ok(v);
            }
            if self.allocated < self.pool {
                self.allocated += 1;
                return Ok(Vec::with_capacity(CHUNK));
            }
            let chunk = self.back.recv().map_err(|_| died())?;
            self.reclaim(chunk);
        }
    }

    /// Sends the filled part of the current buffer to be hashed and returns it, so the
    /// caller can use the same bytes; `None` if it was empty.
    pub(crate) fn ship(&mut self) -> io::Result<Option<Chunk>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let next = self.next_buffer()?;
        let chunk = Arc::new(std::mem::replace(&mut self.buf, next));
        self.tx
            .as_ref()
            .ok_or_else(died)?
            .send(Arc::clone(&chunk))
            .map_err(|_| died())?;
        Ok(Some(chunk))
    }

    /// Copies as much of `data` as fits in the current buffer; when that fills it, ships it
    /// and returns it too. Returns how many bytes were taken.
    pub(crate) fn fill(&mut self, data: &[u8]) -> io::Result<(usize, Option<Chunk>)> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        let full = if self.buf.len() == CHUNK {
            self.ship()?
        } else {
            None
        };
        Ok((n, full))
    }

    /// Hashes all of `data`.
    pub(crate) fn update(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let (n, _) = self.fill(data)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Hashes what is left and returns the digest and the number of bytes hashed.
    pub(crate) fn finish(mut self) -> io::Result<([u8; 32], u64)> {
        self.ship()?;
        drop(self.tx.take());
        let (hash, len) = self
            .worker
            .take()
            .ok_or_else(died)?
            .join()
            .map_err(|_| died())?;
        Ok((hash.finalize().into(), len))
    }
}
