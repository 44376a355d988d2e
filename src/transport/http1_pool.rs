//! The plain HTTP/1.1 path to an upstream: hyper client connections kept in a bounded
//! idle pool, each one driven by the request that holds it.
//!
//! hyper-util's pooled client runs every upstream connection on a task of its own: a
//! request hands its head to that task over a channel, is woken when the answer comes
//! back, and the connection is handed back through the pool's mutex and an `on_idle`
//! spawn. Here the request's own task polls the connection — while it waits for the
//! head, and then, through [`Lease`], while the client reads the body — so a request
//! costs no task hop and no wake-up of another task. When the body has been read to its
//! end the connection goes back to the idle pool; one that cannot be reused (the upstream
//! closed it, or the exchange did not finish cleanly) is dropped, which closes it.
//!
//! What stays on hyper-util's client: TLS and HTTP/2 upstreams, and upgrades
//! (WebSockets), whose connection must outlive the exchange.
//!
//! A connection waiting in the pool is not polled, so an upstream that closes it is
//! noticed when it is next taken (a poll sees the end of the stream and it is dropped).
//! A request that an upstream's close still beats to the connection is sent again on a
//! fresh one, as the pooled client does, when hyper says nothing of it was written.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::transport::request_body::UpstreamRequestBody;

/// Idle lists per upstream. Each worker keeps to its own list, so a connection is
/// driven by the runtime whose reactor it is registered with (another worker's would
/// have to be woken across threads for each of its reads). More workers than this share
/// lists, which is correct, only slower.
const SHARDS: usize = 64;

/// One upstream's idle connections, per worker, most recently used last: hyper client
/// connections, and bare TCP streams for [`crate::proxy::plain_http1`], which speaks
/// HTTP/1.1 on them itself.
pub struct Http1Pool {
    host: Arc<str>,
    port: u16,
    /// Covers the TCP connect.
    connect_timeout: Duration,
    connections: IdleLists<Box<Connection>>,
    streams: IdleLists<TcpStream>,
}

/// Idle connections of one kind, a list per worker: by worker
/// ([`crate::transport::workers::current`]) modulo their number.
struct IdleLists<C> {
    max_idle: usize,
    idle_timeout: Duration,
    lists: Box<[Mutex<VecDeque<Idle<C>>>]>,
}

struct Idle<C> {
    connection: C,
    since: Instant,
}

impl<C> IdleLists<C> {
    fn new(max_idle: usize, idle_timeout: Duration) -> IdleLists<C> {
        IdleLists {
            max_idle,
            idle_timeout,
            lists: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The most recently used idle connection that is still `usable`, dropping the stale.
    fn checkout(&self, mut usable: impl FnMut(&mut C) -> bool) -> Option<C> {
        let mut idle = self.lock();
        while let Some(entry) = idle.pop_back() {
            if entry.since.elapsed() >= self.idle_timeout {
                // Every older entry is staler still.
                idle.clear();
                return None;
            }
            let mut connection = entry.connection;
            if usable(&mut connection) {
                return Some(connection);
            }
        }
        None
    }

    fn checkin(&self, connection: C) {
        let mut idle = self.lock();
        if idle.len() >= self.max_idle {
            if self.max_idle == 0 {
                return;
            }
            // The oldest goes: it is the likeliest to have been closed by now.
            idle.pop_front();
        }
        idle.push_back(Idle {
            connection,
            since: Instant::now(),
        });
    }

    /// This worker's idle list.
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle<C>>> {
        let shard = crate::transport::workers::current() % self.lists.len();
        // A panic while holding the lock leaves a list of connections, still a list.
        self.lists[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A client connection and the handle that sends on it. Kept boxed (one allocation per
/// connection): the pool, the request and the body's lease move it, and a pointer is
/// cheaper to move than its 700 bytes.
struct Connection {
    sender: http1::SendRequest<UpstreamRequestBody>,
    driver: http1::Connection<TokioIo<TcpStream>, UpstreamRequestBody>,
    /// The driver has finished (closed or failed) and must not be polled again.
    ended: bool,
}

/// Why a request got no response head.
#[derive(Debug)]
pub enum SendError {
    /// The TCP connect failed: nothing was sent.
    Connect(io::Error),
    /// The TCP connect took longer than `timeouts.connect`: nothing was sent.
    ConnectTimeout,
    /// The exchange failed after the connection was made.
    Exchange(hyper::Error),
}

impl Http1Pool {
    /// A pool of connections to `host:port` (`host` as it is dialed: see
    /// [`crate::transport::upstream_client::dial_host`]).
    pub fn new(
        host: Arc<str>,
        port: u16,
        connect_timeout: Duration,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Http1Pool {
        Http1Pool {
            host,
            port,
            connect_timeout,
            connections: IdleLists::new(max_idle, idle_timeout),
            streams: IdleLists::new(max_idle, idle_timeout),
        }
    }

    /// Send `request` (its URI in origin form) on an idle connection, or a new one. The
    /// response's body must be read through the returned lease, which drives the
    /// connection and returns it to the pool at the body's end; none is returned when
    /// the body has ended already (the connection is back in the pool).
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<UpstreamRequestBody>,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        loop {
            let (mut connection, reused) = match self.checkout() {
                Some(connection) => (connection, true),
                // Boxed: the connect is rare, and its state would otherwise be part of
                // every request's future.
                None => (Box::pin(self.connect()).await?, false),
            };
            match exchange(&mut connection, request).await {
                Ok(response) => {
                    let lease = Lease {
                        connection,
                        pool: self.clone(),
                    };
                    if hyper::body::Body::is_end_stream(response.body()) {
                        // Nothing left to read (a HEAD, a 204, a `Content-Length: 0`).
                        lease.release();
                        return Ok((response, None));
                    }
                    return Ok((response, Some(lease)));
                }
                Err(mut err) => match err.take_message() {
                    // The upstream closed a pooled connection before anything was written:
                    // the request was never seen, so a fresh connection may take it.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Exchange(err.into_error())),
                },
            }
        }
    }

    fn checkout(&self) -> Option<Box<Connection>> {
        self.connections.checkout(|c| c.still_usable())
    }

    fn checkin(&self, connection: Box<Connection>) {
        self.connections.checkin(connection)
    }

    /// An idle TCP stream that the upstream has not closed (nor sent anything on).
    pub fn checkout_stream(&self) -> Option<TcpStream> {
        self.streams.checkout(|stream| {
            let mut probe = [0u8; 1];
            // Would block: open and quiet. Anything else (a close, stray bytes, an
            // error) makes it unusable.
            matches!(stream.try_read(&mut probe), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
        })
    }

    /// A stream whose last exchange ended cleanly, for the next request.
    pub fn checkin_stream(&self, stream: TcpStream) {
        self.streams.checkin(stream)
    }

    /// A new TCP connection to the upstream, within `timeouts.connect`.
    pub async fn connect_stream(&self) -> Result<TcpStream, SendError> {
        let dial = async {
            let tcp = TcpStream::connect((&*self.host, self.port)).await?;
            // Small requests must not wait for Nagle's algorithm.
            tcp.set_nodelay(true)?;
            Ok::<_, io::Error>(tcp)
        };
        match tokio::time::timeout(self.connect_timeout, dial).await {
            Ok(Ok(tcp)) => Ok(tcp),
            Ok(Err(err)) => Err(SendError::Connect(err)),
            Err(_) => Err(SendError::ConnectTimeout),
        }
    }

    async fn connect(&self) -> Result<Box<Connection>, SendError> {
        let tcp = self.connect_stream().await?;
        let (sender, driver) = http1::Builder::new()
            .title_case_headers(false)
            .preserve_header_case(false)
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(SendError::Exchange)?;
        let mut connection = Box::new(Connection {
            sender,
            driver,
            ended: false,
        });
        // A new connection is ready once its driver has been polled.
        std::future::poll_fn(|cx| connection.poll_ready(cx))
            .await
            .map_err(SendError::Exchange)?;
        Ok(connection)
    }
}

impl Connection {
    /// Poll the driver, which writes requests and reads responses; `false` once it has
    /// ended. Its end (a close, an error) reaches the request or body it concerns.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended && Pin::new(&mut self.driver).poll(cx).is_ready() {
            self.ended = true;
        }
        !self.ended
    }

    /// Drive the connection until it can take a request.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.drive(cx);
        self.sender.poll_ready(cx)
    }

    /// Poll the driver once, without a task to wake: it reads what the upstream sent
    /// (a close, say) and finishes the last exchange. The next real poll registers the
    /// task again, so nothing is missed.
    fn still_usable(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop())) && self.sender.is_ready()
    }
}

/// Send `request` and drive the connection until the response head is in.
async fn exchange(
    connection: &mut Connection,
    request: Request<UpstreamRequestBody>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<UpstreamRequestBody>>> {
    let mut response = std::pin::pin!(connection.sender.try_send_request(request));
    std::future::poll_fn(|cx| {
        // The driver first: it writes the request and reads the answer, which the
        // response future then finds ready. If it ends, the response has the error.
        connection.drive(cx);
        response.as_mut().poll(cx)
    })
    .await
}

/// The connection a response body arrives on, held until the body has been read: the
/// body's reader polls it ([`Lease::poll_connection`]) and, at the end, releases it to
/// the pool. Dropped before that, it closes the connection (the body was not read whole).
pub struct Lease {
    connection: Box<Connection>,
    pool: Arc<Http1Pool>,
}

impl Lease {
    /// Drive the connection: it moves the body's bytes from the socket into the body.
    /// `false` once it has ended (closed or failed: the body has its end or error), when
    /// the lease is only to be dropped.
    pub fn poll_connection(&mut self, cx: &mut Context<'_>) -> bool {
        self.connection.drive(cx)
    }

    /// The body has been read to its end: back to the pool, if it can take a request.
    pub fn release(mut self) {
        if self.connection.still_usable() {
            self.pool.checkin(self.connection);
        }
    }
}
