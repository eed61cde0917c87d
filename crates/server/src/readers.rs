//! The reader pool: engine reads (stats, reports, fan pages, segment previews and lists) run
//! on a few threads of their own, in the idle scheduling class, below the writer and the
//! request threads.
//!
//! A read holds the tenant engine's read lock and does no I/O, so it never makes the writer
//! wait for long; but a console that reads all day still takes CPU, and on a server with two
//! cores every millisecond a report computes is taken from ingest. Measured (docs/BENCHMARKS.md,
//! "Readers beside ingest"), a lower nice value (10) barely helped: the ingest is bound by its
//! requests' latency more than by CPU, and a niced read still holds a core for its time slice
//! each time a stage of a request (the request thread, the writer) wakes. In the idle class
//! (`siyu_app::ingest::idle_priority`) the waking thread takes the core at once; the read
//! gets every cycle ingest leaves, and under an ingest that wants both cores all the time it
//! waits for one.
//!
//! Reads that wait on purpose (the trigger stream's long poll) stay on tokio's blocking pool:
//! here they would hold a reader thread for seconds.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use crate::ApiError;

type Job = Box<dyn FnOnce() + Send>;

/// The process's pool: as many threads as cores (at least two), started at the first read.
fn pool() -> &'static Mutex<Sender<Job>> {
    static POOL: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        for i in 0..n {
            let rx = rx.clone();
            let started = std::thread::Builder::new()
                .name(format!("siyu-reader-{i}"))
                .spawn(move || {
                    siyu_app::ingest::idle_priority();
                    work(&rx);
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "could not start a reader thread");
            }
        }
        Mutex::new(tx)
    })
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job();
    }
}

/// Runs a read on the reader pool and waits for its answer without holding an async thread.
pub(crate) async fn reading<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // A read that panics drops `reply`: the caller gets an internal error, the thread goes on.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        if let Ok(out) = out {
            let _ = reply.send(out);
        }
    });
    let sent = pool()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(job)
        .is_ok();
    if !sent {
        return Err(ApiError::Internal("the reader pool stopped".into()));
    }
    answer
        .await
        .map_err(|_| ApiError::Internal("a read failed".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_answers_and_a_panicking_one_is_an_internal_error() {
        assert_eq!(reading(|| Ok(41 + 1)).await.unwrap(), 42);
        let failed = reading::<u8>(|| panic!("a bug in a read")).await;
        assert!(matches!(failed, Err(ApiError::Internal(_))), "{failed:?}");
        // The pool survives it.
        assert_eq!(reading(|| Ok("still here")).await.unwrap(), "still here");
    }

    #[tokio::test]
    async fn reads_run_off_the_async_threads_in_the_idle_class() {
        let name = reading(|| Ok(std::thread::current().name().map(str::to_string)))
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("siyu-reader-")));
        #[cfg(target_os = "linux")]
        {
            // SAFETY: sched_getscheduler of the calling thread, no pointers.
            let policy = reading(|| Ok(unsafe { libc::sched_getscheduler(0) }))
                .await
                .unwrap();
            assert_eq!(policy, libc::SCHED_IDLE);
        }
    }
}
