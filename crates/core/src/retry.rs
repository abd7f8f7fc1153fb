//! Backoff and the step-level retry loop: a reconcile step that meets a conflict or a transient
//! error starts over from a fresh read, so a retry never writes stale data.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter between `initial` and `maximum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub maximum: Duration,
}

impl Backoff {
    /// A backoff from `initial` doubling up to `maximum`.
    pub const fn new(initial: Duration, maximum: Duration) -> Self {
        Self { initial, maximum }
    }

    /// The delay before attempt `attempt` (1 is the first retry): a random point in
    /// `[d/2, d]` where `d = min(initial * 2^(attempt-1), maximum)`, so that concurrent writers
    /// who collided do not collide again in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.maximum.max(self.initial));
        let half = capped / 2;
        let jitter_nanos = rand::thread_rng().gen_range(0..=half.as_nanos().max(1) as u64);
        half + Duration::from_nanos(jitter_nanos)
    }
}

/// What to do with an error from one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try the whole step again after a backoff.
    Retry,
    /// Try again after at least this long (a server's `Retry-After`).
    RetryAfter(Duration),
    /// Try again, unless this many attempts in a row have failed so: for failures that rarely
    /// heal (an endpoint that refuses connections, answers HTML, or does not answer).
    RetryUpTo(u32),
    /// Give up: the error is final.
    Stop,
}

/// Runs `attempt` until it succeeds, `decide` says stop, or `attempts` are used up; the last
/// error is returned. `attempt` receives the attempt number (0 for the first).
pub async fn retry<T, E, F, Fut>(
    attempts: u32,
    backoff: Backoff,
    decide: impl FnMut(&E) -> RetryDecision,
    attempt: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_within(attempts, None, backoff, decide, attempt).await
}

/// [`retry`], and no new attempt once `deadline` has passed since the first began (or would
/// pass during the wait before it). An attempt that is running is not cut short: waiting for a
/// long-running operation has its own deadline.
pub async fn retry_within<T, E, F, Fut>(
    attempts: u32,
    deadline: Option<Duration>,
    backoff: Backoff,
    mut decide: impl FnMut(&E) -> RetryDecision,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = tokio::time::Instant::now();
    let mut n = 0;
    // Failures in a row that allow only a few attempts: a transient error in between (a 503
    // from a busy server) starts the count again.
    let mut few = 0;
    loop {
        match attempt(n).await {
            Ok(value) => return Ok(value),
            Err(err) => {
                n += 1;
                let decision = decide(&err);
                few = match decision {
                    RetryDecision::RetryUpTo(_) => few + 1,
                    _ => 0,
                };
                let wait = match decision {
                    RetryDecision::Stop => return Err(err),
                    _ if n >= attempts.max(1) => return Err(err),
                    RetryDecision::RetryUpTo(limit) if few >= limit.max(1) => return Err(err),
                    RetryDecision::Retry | RetryDecision::RetryUpTo(_) => backoff.delay(n),
                    RetryDecision::RetryAfter(at_least) => backoff.delay(n).max(at_least),
                };
                if deadline.is_some_and(|d| start.elapsed() + wait > d) {
                    tracing::debug!(attempt = n, "step deadline reached: not retrying");
                    return Err(err);
                }
                tracing::debug!(attempt = n, ?wait, "retrying step");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The first line of an error's text without the advice that follows " (what to do: ", for
/// progress lines.
pub fn short_reason(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let cut = line.find(" (what to do:").unwrap_or(line.len());
    line[..cut].trim_end().to_string()
}

/// Runs one reconcile step named `name` (`"create access level kubeflow"`): progress events
/// when it starts, is retried (with the cause of the failed attempt) and ends; a tracing span;
/// and, while `decide` says so within `policies.step_attempts` and `policies.step_deadline`,
/// the whole step again from a fresh read (each attempt calls `f`). Every crate's `apply` runs
/// its steps through this.
pub async fn step<T, E, F, Fut>(
    progress: &crate::Progress,
    policies: &crate::Policies,
    name: &str,
    decide: impl Fn(&E) -> RetryDecision,
    mut f: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    use tracing::Instrument as _;
    progress.started(name);
    let span = tracing::info_span!("step", step = name);
    // A Mutex, not a RefCell: the step's future must stay `Send`.
    let last_reason = std::sync::Mutex::new(String::new());
    let result = retry_within(
        policies.step_attempts,
        Some(policies.step_deadline),
        policies.step_backoff,
        |e: &E| {
            let decision = decide(e);
            if decision != RetryDecision::Stop {
                tracing::info!(step = name, error = %e, "retrying step from a fresh read");
                if let Ok(mut reason) = last_reason.lock() {
                    *reason = short_reason(&e.to_string());
                }
            }
            decision
        },
        |attempt| {
            if attempt > 0 {
                progress.emit(crate::ProgressEvent::Retrying {
                    step: name.to_string(),
                    attempt,
                    reason: last_reason.lock().map(|r| r.clone()).unwrap_or_default(),
                });
            }
            // Boxed: SDK futures (GKE's Cluster above all) are large in debug builds, and a
            // 2 MiB thread stack (tokio's workers, test threads) must hold the whole chain.
            Box::pin(f())
        },
    )
    .instrument(span)
    .await;
    progress.finished(name, result.is_ok());
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_grow_and_cap() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        for attempt in 1..30 {
            let d = b.delay(attempt);
            assert!(d <= Duration::from_millis(80), "{d:?}");
            assert!(d >= Duration::from_millis(5), "{d:?}");
        }
        assert!(b.delay(10) >= Duration::from_millis(40));
    }

    #[tokio::test]
    async fn retries_until_success_and_stops_on_final_errors() {
        let b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        let calls = AtomicU32::new(0);
        let out: Result<u32, &str> = retry(
            5,
            b,
            |_| RetryDecision::Retry,
            |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { if n < 2 { Err("busy") } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(out, Ok(2));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let out: Result<u32, &str> =
            retry(5, b, |_| RetryDecision::Stop, |_| async { Err("final") }).await;
        assert_eq!(out, Err("final"));

        let calls = AtomicU32::new(0);
        let out: Result<u32, &str> = retry(
            3,
            b,
            |_| RetryDecision::Retry,
            |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err("busy") }
            },
        )
        .await;
        assert_eq!(out, Err("busy"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn few_attempts_count_in_a_row_and_the_deadline_ends_retries() {
        let b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        // "few" failures (limit 2) separated by ordinary transient ones go on...
        let calls = AtomicU32::new(0);
        let out: Result<u32, &str> = retry(
            10,
            b,
            |e: &&str| {
                if *e == "refused" {
                    RetryDecision::RetryUpTo(2)
                } else {
                    RetryDecision::Retry
                }
            },
            |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 | 2 => Err("refused"),
                        1 => Err("busy"),
                        _ => Ok(n),
                    }
                }
            },
        )
        .await;
        assert_eq!(out, Ok(3));
        // ...two in a row stop.
        let calls = AtomicU32::new(0);
        let out: Result<u32, &str> = retry(
            10,
            b,
            |_| RetryDecision::RetryUpTo(2),
            |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err("refused") }
            },
        )
        .await;
        assert_eq!(out, Err("refused"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // No new attempt once the deadline would pass during the wait.
        let calls = AtomicU32::new(0);
        let slow = Backoff::new(Duration::from_millis(400), Duration::from_millis(400));
        let out: Result<u32, &str> = retry_within(
            10,
            Some(Duration::from_millis(100)),
            slow,
            |_| RetryDecision::Retry,
            |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err("busy") }
            },
        )
        .await;
        assert_eq!(out, Err("busy"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn short_reasons_drop_the_advice() {
        assert_eq!(
            short_reason(
                "read x: unreachable: http://h:1: connection refused (what to do: check)\nmore"
            ),
            "read x: unreachable: http://h:1: connection refused"
        );
    }
}
