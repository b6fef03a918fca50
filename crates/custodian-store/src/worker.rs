//! A background thread (the SQLite store's audit appender and checkpointer, the vault's
//! purger): started when first needed, joined when its owner closes, and, when none can be
//! started, replaced by callers doing its work themselves.

use std::thread::JoinHandle;

#[derive(Debug, Default)]
pub enum Worker {
    #[default]
    NotStarted,
    Running(JoinHandle<()>),
    /// None could be started: its callers do its work.
    Failed,
}

impl Worker {
    /// `run` on a thread called `name`; `otherwise` tells the log what happens without it.
    pub fn start(
        name: &'static str,
        otherwise: &'static str,
        run: impl FnOnce() + Send + 'static,
    ) -> Self {
        match std::thread::Builder::new().name(name.into()).spawn(run) {
            Ok(thread) => Self::Running(thread),
            Err(e) => {
                tracing::warn!(error = %e, thread = name, "could not start a thread: {otherwise}");
                Self::Failed
            }
        }
    }

    pub fn not_started(&self) -> bool {
        matches!(self, Self::NotStarted)
    }

    pub fn running(&self) -> bool {
        matches!(self, Self::Running(_))
    }

    /// Waits for the thread to end; its loop must have been told to stop.
    pub fn join(self) {
        if let Self::Running(thread) = self {
            let _ = thread.join();
        }
    }
}
