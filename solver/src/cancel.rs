//! A cancellation flag shared by the solve, its running vertices and the caller (Ctrl-C).
//!
//! Built on `tokio::sync::watch` so that any number of tasks can both poll it
//! ([`CancelToken::is_cancelled`]) and await it ([`CancelToken::cancelled`]); once set it
//! stays set.

use std::sync::Arc;

use tokio::sync::watch;

/// A clonable, one-way cancellation flag. All clones share the same state.
#[derive(Debug, Clone)]
pub struct CancelToken {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken::new()
    }
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Sets the flag and wakes every task waiting in [`CancelToken::cancelled`].
    /// Cancelling twice is harmless.
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once the token is cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|cancelled| *cancelled).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clones_share_the_flag_and_wake_waiters() {
        let token = CancelToken::new();
        let waiter = {
            let token = token.clone();
            tokio::spawn(async move { token.cancelled().await })
        };
        assert!(!token.is_cancelled());
        token.clone().cancel();
        waiter.await.unwrap();
        assert!(token.is_cancelled());
        // Already cancelled: returns at once.
        token.cancelled().await;
    }
}
