//! Waiting for long-running operations with progress events, our backoff and a deadline.

use std::time::{Duration, Instant};

use google_cloud_gax::error::Error as SdkError;
use google_cloud_lro::{Poller, PollingResult};

use crate::error::ErrorKind;
use crate::progress::{Progress, ProgressEvent};
use crate::retry::Backoff;

/// Polls `poller` until the operation is done, emitting [`ProgressEvent::Waiting`] while it runs.
/// Transient polling errors are retried until `deadline`; a failed operation returns its error.
pub async fn wait<P, R, M>(
    mut poller: P,
    step: &str,
    progress: &Progress,
    backoff: Backoff,
    deadline: Duration,
) -> Result<R, SdkError>
where
    P: Poller<R, M>,
{
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match poller.poll().await {
            None => {
                return Err(SdkError::io(format!(
                    "{step}: the operation poller ended without a result"
                )));
            }
            Some(PollingResult::Completed(result)) => return result,
            Some(PollingResult::InProgress(_)) => {
                progress.emit(ProgressEvent::Waiting {
                    step: step.to_string(),
                    operation: String::new(),
                    status: None,
                    elapsed: start.elapsed(),
                });
            }
            Some(PollingResult::PollingError(err)) => {
                if !ErrorKind::of(&err).is_transient() {
                    return Err(err);
                }
                tracing::debug!(%err, step, "transient error while polling; retrying");
            }
        }
        if start.elapsed() > deadline {
            return Err(SdkError::timeout(format!(
                "{step}: the operation did not finish within {deadline:?}"
            )));
        }
        tokio::time::sleep(backoff.delay(attempt)).await;
    }
}
