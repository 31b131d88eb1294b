//! Running CPU-heavy or blocking work without stalling the async threads.
//!
//! Executors run on tokio worker threads, which must never block: a vertex that hashes a
//! context, builds a tar or compresses a layer would otherwise hold up every other
//! vertex's progress. Two helpers:
//!
//! - [`blocking`] for work that waits on the OS (file I/O, `std::process` waits, database
//!   transactions): tokio's blocking pool, which grows as needed.
//! - [`compute`] for work that keeps a core busy (hashing, compression, tar): the rayon
//!   pool, sized to the number of cores, so parallel stages share the CPU instead of
//!   oversubscribing it. Inside the closure, rayon's parallel iterators may be used.
//!
//! Neither can be interrupted once started: check a [`crate::CancelToken`] inside long
//! loops.

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockingError {
    #[error("background task panicked")]
    Panicked,
    #[error("background task was cancelled")]
    Cancelled,
}

/// Runs `f` on tokio's blocking pool and returns its result.
pub async fn blocking<F, T>(f: F) -> Result<T, BlockingError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_panic() {
            BlockingError::Panicked
        } else {
            BlockingError::Cancelled
        }
    })
}

/// Runs `f` on the global rayon pool and returns its result. A panic in `f` is caught
/// and reported as [`BlockingError::Panicked`] instead of aborting the process.
pub async fn compute<F, T>(f: F) -> Result<T, BlockingError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // The receiver is gone only if the caller stopped waiting; nothing to do then.
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(BlockingError::Panicked),
        Err(_) => Err(BlockingError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_pools_return_results_and_catch_panics() {
        assert_eq!(blocking(|| 6 * 7).await, Ok(42));
        let sum = compute(|| (1..=100u64).sum::<u64>()).await;
        assert_eq!(sum, Ok(5050));
        assert_eq!(
            blocking(|| -> u8 { panic!("boom") }).await,
            Err(BlockingError::Panicked)
        );
        assert_eq!(
            compute(|| -> u8 { panic!("boom") }).await,
            Err(BlockingError::Panicked)
        );
    }
}
