//! Worker threads for client connections, each running a current-thread tokio runtime of
//! its own (thread-per-core). A connection handed to a worker stays on that thread for
//! its whole life, with everything it spawns and the plain HTTP/1.1 upstream connections
//! it opens (kept per worker by [`crate::transport::http1_pool`]), so such a request
//! never waits for a wake-up from another thread nor has its task stolen by one. (TLS,
//! HTTP/2 and upgraded upstream connections are shared by all workers in hyper-util's
//! pool: one opened on another worker is driven by that worker.)
//!
//! tokio's work-stealing scheduler would balance tasks between threads; on a proxy's
//! short requests that balancing costs more (cross-thread queues and wake-ups) than it
//! gains, and connections handed out in turn are balanced enough.
//!
//! Worker 0 is the runtime that started the workers: with one worker no thread is
//! started and connections run where they always did.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

/// How long a stopping worker waits for its blocking tasks.
const BLOCKING_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The worker whose thread this is; 0 on any thread that is not a started worker's.
/// Lets per-worker state (the upstream connection pools) keep each worker to its own.
pub fn current() -> usize {
    CURRENT.get()
}

/// `count` workers that each run `serve(item)` for the items dispatched to them.
pub struct Workers<T, F> {
    serve: F,
    /// Workers 1..count, in order.
    remote: Vec<Remote<T>>,
    next: AtomicUsize,
}

struct Remote<T> {
    items: mpsc::UnboundedSender<T>,
    thread: JoinHandle<()>,
}

impl<T, F, Fut> Workers<T, F>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    /// Start `count - 1` worker threads; the caller's runtime is worker 0.
    pub fn start(count: usize, serve: F) -> io::Result<Self> {
        let remote = (1..count.max(1))
            .map(|index| Remote::start(index, serve.clone()))
            .collect::<io::Result<_>>()?;
        Ok(Workers {
            serve,
            remote,
            next: AtomicUsize::new(0),
        })
    }

    pub fn count(&self) -> usize {
        self.remote.len() + 1
    }

    /// Serve `item` on the next worker in turn. Must be called on worker 0's runtime.
    pub fn dispatch(&self, item: T) {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.count();
        let item = match index.checked_sub(1) {
            None => item,
            Some(remote) => match self.remote[remote].items.send(item) {
                Ok(()) => return,
                // Its thread is gone (a panic ended it): serve here rather than drop.
                Err(unsent) => unsent.0,
            },
        };
        tokio::spawn((self.serve)(item));
    }

    /// Stop the worker threads once the caller has drained their work: each runtime is
    /// dropped, which cancels whatever is still running on it.
    pub async fn stop(self) {
        let threads: Vec<_> = self
            .remote
            .into_iter()
            .map(|remote| {
                drop(remote.items);
                remote.thread
            })
            .collect();
        if threads.is_empty() {
            return;
        }
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a worker thread panicked");
                }
            }
        });
        let _ = joined.await;
    }
}

impl<T: Send + 'static> Remote<T> {
    fn start<F, Fut>(index: usize, serve: F) -> io::Result<Self>
    where
        F: Fn(T) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Built here, so a runtime that cannot start is an error of `start`.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (items, mut received) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name(format!("abproxy-worker-{index}"))
            .spawn(move || {
                CURRENT.set(index);
                runtime.block_on(async move {
                    while let Some(item) = received.recv().await {
                        tokio::spawn(serve(item));
                    }
                });
                // Not an unbounded wait for the blocking pool (a name lookup of a new
                // upstream connection runs there) once the work is drained.
                runtime.shutdown_timeout(BLOCKING_LINGER);
            })?;
        Ok(Remote { items, thread })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Where an item was served: the worker index, the thread's name, the runtime kind.
    type Seen = Arc<Mutex<Vec<(usize, usize, Option<String>, tokio::runtime::RuntimeFlavor)>>>;

    fn recorder(seen: Seen) -> impl Fn(usize) -> std::future::Ready<()> + Clone + Send {
        move |item| {
            seen.lock().unwrap().push((
                item,
                current(),
                std::thread::current().name().map(str::to_owned),
                tokio::runtime::Handle::current().runtime_flavor(),
            ));
            std::future::ready(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn items_are_dealt_in_turn_each_worker_on_its_own_current_thread_runtime() {
        let seen = Seen::default();
        let workers = Workers::start(3, recorder(seen.clone())).unwrap();
        assert_eq!(workers.count(), 3);
        for item in 0..6 {
            workers.dispatch(item);
        }
        // Dropping the channels lets each thread finish what it was sent, then end.
        workers.stop().await;
        // Worker 0's items are spawned on this runtime: let them run.
        tokio::task::yield_now().await;
        let mut seen = std::mem::take(&mut *seen.lock().unwrap());
        seen.sort_by_key(|entry| entry.0);
        let workers: Vec<usize> = seen.iter().map(|entry| entry.1).collect();
        assert_eq!(workers, [0, 1, 2, 0, 1, 2]);
        let here = std::thread::current().name().map(str::to_owned);
        for (_, worker, thread, flavor) in &seen {
            assert_eq!(*flavor, tokio::runtime::RuntimeFlavor::CurrentThread);
            if *worker > 0 {
                assert_eq!(
                    thread.as_deref(),
                    Some(&*format!("abproxy-worker-{worker}"))
                );
            } else {
                assert_eq!(*thread, here, "worker 0 is the runtime that started them");
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_worker_starts_no_thread() {
        let seen = Seen::default();
        let workers = Workers::start(1, recorder(seen.clone())).unwrap();
        workers.dispatch(7);
        workers.stop().await;
        tokio::task::yield_now().await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, 0);
        assert_eq!(seen[0].2, std::thread::current().name().map(str::to_owned));
    }
}
