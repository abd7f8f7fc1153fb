//! Progress events for long work, which example CLIs draw with `indicatif`.

use std::sync::Arc;
use std::time::Duration;

/// Something worth showing while work goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// A step began.
    StepStarted {
        /// The step ("create access level kubeflow").
        step: String,
    },
    /// A step ended.
    StepFinished {
        /// The step.
        step: String,
        /// Whether it succeeded.
        ok: bool,
    },
    /// Still waiting for a long-running operation.
    Waiting {
        /// The step.
        step: String,
        /// The operation's name.
        operation: String,
        /// The operation's status as the API reports it (`"RUNNING"`), when it has one.
        status: Option<String>,
        /// How long so far.
        elapsed: Duration,
    },
    /// A step is retried after a transient error or a conflict.
    Retrying {
        /// The step.
        step: String,
        /// The attempt that failed (1 is the first).
        attempt: u32,
        /// Why.
        reason: String,
    },
    /// Bytes transferred so far of a known or unknown total.
    Bytes {
        /// The step.
        step: String,
        /// Done so far.
        done: u64,
        /// The total, when known.
        total: Option<u64>,
    },
    /// Items of a long list handled so far (images checked, documents applied): sent by
    /// steps over hundreds of items, at most about a hundred times per step.
    Items {
        /// The step.
        step: String,
        /// Done so far.
        done: usize,
        /// How many in all.
        total: usize,
    },
}

/// Where progress events go: a cheap, cloneable callback (or nowhere).
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<Sink>>);

/// The callback behind a [`Progress`].
type Sink = dyn Fn(&ProgressEvent) + Send + Sync;

impl Progress {
    /// Sends events to `sink`.
    pub fn new(sink: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(sink)))
    }

    /// Discards events.
    pub fn none() -> Self {
        Self(None)
    }

    /// Emits an event (also logged with `tracing` at debug level).
    #[allow(clippy::needless_pass_by_value)] // events are built at the call site; by value reads best
    pub fn emit(&self, event: ProgressEvent) {
        tracing::debug!(?event, "progress");
        if let Some(sink) = &self.0 {
            sink(&event);
        }
    }

    /// Emits `StepStarted`.
    pub fn started(&self, step: &str) {
        self.emit(ProgressEvent::StepStarted {
            step: step.to_string(),
        });
    }

    /// Emits `StepFinished`.
    pub fn finished(&self, step: &str, ok: bool) {
        self.emit(ProgressEvent::StepFinished {
            step: step.to_string(),
            ok,
        });
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(sink)"
        } else {
            "Progress(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn delivers_events() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let p = Progress::new(move |e| sink.lock().unwrap().push(e.clone()));
        p.started("a");
        p.finished("a", true);
        Progress::none().started("ignored");
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
