//! Graceful shutdown of open connections. Each connection task holds a [`Watcher`];
//! [`Drain::shutdown`] asks every connection to finish the request in flight and close,
//! then waits for the last one.
//!
//! hyper-util has the same idea, but its trait is sealed to the connection types it
//! knows, and an HTTP/1 connection that allows upgrades (WebSockets) is not one of them.

use std::future::Future;
use std::pin::{pin, Pin};

use hyper::server::conn::{http1, http2};
use tokio::sync::watch;

/// The connections of one listener.
pub struct Drain {
    stop: watch::Sender<bool>,
}

/// Held by a connection's task for as long as it runs.
pub struct Watcher {
    stop: watch::Receiver<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            stop: watch::Sender::new(false),
        }
    }
}

impl Drain {
    pub fn watcher(&self) -> Watcher {
        Watcher {
            stop: self.stop.subscribe(),
        }
    }

    /// Connections still running.
    pub fn count(&self) -> usize {
        self.stop.receiver_count()
    }

    /// Ask every connection to close once its request in flight is answered, and wait
    /// until they all have.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.stop.closed().await;
    }
}

/// A hyper server connection that can be asked to close after its request in flight.
pub trait Graceful: Future {
    fn start_shutdown(self: Pin<&mut Self>);
}

impl Watcher {
    /// Has a shutdown started? For a connection that runs its own exchanges.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Wait until a shutdown starts (forever, if the drain itself is gone).
    pub async fn stopping(&mut self) {
        if self.stop.wait_for(|&stop| stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Run `connection` to its end; if a shutdown starts meanwhile, tell it to finish.
    pub async fn watch<C: Graceful>(mut self, connection: C) -> C::Output {
        let mut connection = pin!(connection);
        tokio::select! {
            done = connection.as_mut() => return done,
            stopping = self.stop.wait_for(|&stop| stop) => {
                // An error means the drain itself is gone: nobody waits, run on.
                if stopping.is_ok() {
                    connection.as_mut().start_shutdown();
                }
            }
        }
        connection.await
    }
}

impl<I, S, B> Graceful for http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn start_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Graceful for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn start_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> Graceful for http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn start_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
