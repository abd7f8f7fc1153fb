//! Ctrl-C and SIGTERM: one line that says what the interrupted command left and how to finish,
//! then the shell's usual exit code (130 for SIGINT, 143 for SIGTERM).

use std::future::Future;

/// What an interrupted command leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// It only reads: nothing was changed.
    Reads,
    /// It writes: every step is safe to repeat, so running it again finishes the work.
    Writes(&'static str),
}

/// Commands of the examples that only read (or write local files only).
const READS: &[&str] = &[
    "plan",
    "verify",
    "export",
    "export-zone",
    "render",
    "rewrite",
];

impl Interrupted {
    /// From the command line: the first word that is a command of the examples names it; no
    /// command is `apply`.
    pub(crate) fn from_args() -> Self {
        let command = std::env::args()
            .skip(1)
            .find(|a| READS.contains(&a.as_str()) || a == "apply" || a == "destroy");
        match command.as_deref() {
            Some(c) if READS.contains(&c) => Self::Reads,
            Some("destroy") => Self::Writes("destroy"),
            _ => Self::Writes("apply"),
        }
    }
}

impl Interrupted {
    fn line(self) -> String {
        match self {
            Self::Reads => "interrupted: nothing was changed".to_string(),
            Self::Writes(command) => format!(
                "interrupted: run {command} again to finish (every step is safe to repeat; nothing is left that it cannot complete)"
            ),
        }
    }
}

/// Runs `work` to its end, or until SIGINT or SIGTERM arrives: then prints one line on stderr
/// and exits 130 (SIGINT) or 143 (SIGTERM) without waiting for work in flight.
pub(crate) async fn or_interrupted<T>(what: Interrupted, work: impl Future<Output = T>) -> T {
    // The handlers are installed here, before the work is first polled: a handler installed
    // on the select's first poll would miss a signal sent while the work has not yet yielded.
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    #[cfg(unix)]
    let (interrupt, terminate) = (
        async move {
            match interrupt.as_mut() {
                Some(s) => s.recv().await,
                None => None,
            }
        },
        async move {
            match terminate.as_mut() {
                Some(s) => s.recv().await,
                None => None,
            }
        },
    );
    #[cfg(not(unix))]
    let (interrupt, terminate) = (
        async { tokio::signal::ctrl_c().await.ok() },
        std::future::pending::<Option<()>>(),
    );
    tokio::select! {
        out = work => out,
        Some(()) = interrupt => {
            eprintln!("\n{}", what.line());
            std::process::exit(130)
        }
        Some(()) = terminate => {
            eprintln!("\n{}", what.line());
            std::process::exit(143)
        }
    }
}
