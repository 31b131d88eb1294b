//! When and how long to wait before retrying a registry request: exponential backoff on
//! 5xx, 429 and dropped connections, with a bounded number of attempts.

use std::time::Duration;

/// Retry policy for registry requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first; at least 1.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of any single wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based), or `None` when no attempt
    /// is left.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts.max(1) {
            return None;
        }
        let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
        Some(
            self.base_delay
                .checked_mul(factor)
                .unwrap_or(self.max_delay)
                .min(self.max_delay),
        )
    }

    /// Like [`delay_after`](Self::delay_after), but waits at least what the server asked
    /// for in `Retry-After` (bounded by `max_delay`).
    pub fn delay_with_hint(&self, attempt: u32, hint: Option<Duration>) -> Option<Duration> {
        let delay = self.delay_after(attempt)?;
        Some(match hint {
            Some(h) => delay.max(h.min(self.max_delay)),
            None => delay,
        })
    }

    /// Parses a `Retry-After` value given in seconds (the HTTP-date form is ignored).
    pub fn parse_retry_after(value: &str) -> Option<Duration> {
        value.trim().parse::<u64>().ok().map(Duration::from_secs)
    }

    /// Whether a response status is worth retrying: server errors and rate limiting.
    /// 501 (not implemented) and 505 will not change by asking again.
    pub fn retryable_status(status: u16) -> bool {
        status == 429
            || status == 408
            || ((500..600).contains(&status) && status != 501 && status != 505)
    }

    /// Whether a transport error is worth retrying: connection refused or reset, timeouts,
    /// a body cut short. Errors building the request or decoding are not.
    pub fn retryable_error(err: &reqwest::Error) -> bool {
        !(err.is_builder() || err.is_decode() || err.is_redirect() || err.is_status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_and_bounded() {
        let p = RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let delays: Vec<_> = (1..=6).map(|a| p.delay_after(a)).collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(800)),
                Some(Duration::from_millis(1000)),
                None,
            ]
        );
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_after(40), Some(p.max_delay));
        assert_eq!(p.delay_after(u32::MAX - 1), Some(p.max_delay));
    }

    #[test]
    fn none_and_zero_mean_one_attempt() {
        assert_eq!(RetryPolicy::none().delay_after(1), None);
        let p = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_after(1), None);
    }

    #[test]
    fn retry_after_hint_is_honoured_within_bounds() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        };
        assert_eq!(p.delay_with_hint(1, None), Some(Duration::from_millis(100)));
        assert_eq!(
            p.delay_with_hint(1, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.delay_with_hint(1, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            p.delay_with_hint(2, Some(Duration::ZERO)),
            Some(Duration::from_millis(200))
        );
        assert_eq!(p.delay_with_hint(3, Some(Duration::from_secs(1))), None);
        assert_eq!(
            RetryPolicy::parse_retry_after(" 7 "),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            RetryPolicy::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            None
        );
    }

    #[test]
    fn retryable_statuses() {
        for s in [429, 408, 500, 502, 503, 504] {
            assert!(RetryPolicy::retryable_status(s), "{s}");
        }
        for s in [200, 201, 400, 401, 403, 404, 416, 501, 505] {
            assert!(!RetryPolicy::retryable_status(s), "{s}");
        }
    }
}
