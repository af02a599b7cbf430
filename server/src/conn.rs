//! The accept loop of one shard and its connections.
//!
//! Every shard binds the same address with SO_REUSEPORT, so the kernel
//! spreads connections over shards and a connection is served start to end
//! by the shard that accepted it. Each connection is one task running
//! hyper's HTTP/1.1 state machine (keep-alive, chunked bodies,
//! `Expect: 100-continue`, 431 past MAX_HEADER_BYTES). A connection that
//! sends nothing for the idle timeout is closed. On stop, the loop stops
//! accepting and every connection shuts down gracefully (hyper finishes the
//! response in flight, then closes; idle ones close at once); the loop
//! returns when they are all gone, or after DRAIN_TIMEOUT.

use crate::body::RespBody;
use crate::deadline::{Clocked, ConnClock, ConnTable, Finishing};
use crate::limits::{
    DEADLINE_TICK, DRAIN_TIMEOUT, FDS_PER_CONNECTION, FD_RESERVE, LINGER_MAX_BYTES, LINGER_TIME,
    MAX_CONNECTIONS_PER_SHARD, MAX_HEADER_BYTES, OVERFLOW_CONNECTIONS_PER_SHARD, OVERFLOW_HEAD_TIMEOUT,
    STOP_POLL_INTERVAL,
};
use crate::routes;
use crate::ServerConfig;
use event_listener::Event;
use glommio::net::{TcpListener, TcpStream};
use hyper::service::service_fn;
use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use trove_engine::remote::hyper_io::HyperIo;
use trove_engine::stats::bump;
use trove_engine::NodeServices;

/// Counts a live connection of this shard while it exists.
struct Live(Rc<Cell<usize>>);

impl Live {
    fn new(c: &Rc<Cell<usize>>) -> Self {
        c.set(c.get() + 1);
        Self(c.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Runs the HTTP face on this shard until the node stops and drains.
pub async fn serve(services: Rc<NodeServices>, cfg: Rc<ServerConfig>) {
    let shard = services.shard.clone();
    let listener = match TcpListener::bind(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = shard.id, listen = %cfg.listen, error = %e, "cannot listen; is the port in use?");
            shard.node.request_stop();
            return;
        }
    };
    shard.node.serving.fetch_add(1, Ordering::AcqRel);
    tracing::info!(shard = shard.id, listen = %cfg.listen, "serving");
    let connections = Rc::new(Cell::new(0usize));
    let table = Rc::new(ConnTable::default());
    let cap = connection_cap(&cfg, shard.node.nr_shards());
    tracing::debug!(shard = shard.id, cap, "connection cap");
    // Woken once at stop: every connection then shuts down gracefully.
    let stop = Rc::new(Event::new());
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            while !shard.node.is_stopping() {
                glommio::timer::sleep(STOP_POLL_INTERVAL).await;
            }
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                // At once, before any other task of this shard can fork a
                // git: no child may inherit a client socket (remote/hyper_io.rs).
                if let Err(e) = trove_engine::remote::hyper_io::set_cloexec(std::os::fd::AsRawFd::as_raw_fd(&stream)) {
                    tracing::warn!(shard = shard.id, error = %e, "could not mark a connection close-on-exec; closing it");
                    continue;
                }
                // Full: the connection that waited longest for a request
                // makes room; if every one is in a request, a few more may
                // still ask for health, and past that new ones are closed.
                // A health check whose request is already in (under a flood
                // the accept loop lags, so it is) is answered whatever the
                // load: one answer, from the descriptor reserve.
                let (place, overflow) = if connections.get() >= cap && !table.shed_idlest() {
                    match table.take_overflow(OVERFLOW_CONNECTIONS_PER_SHARD) {
                        Some(p) => (Some(p), true),
                        None if asks_for_health(&stream) => (None, true),
                        None => continue, // dropped: closed at once
                    }
                } else {
                    (None, false)
                };
                let clock = ConnClock::new(overflow);
                table.add(&clock);
                let live = Live::new(&connections);
                let (services, cfg, stop) = (services.clone(), cfg.clone(), stop.clone());
                glommio::spawn_local(async move {
                    serve_connection(services, cfg, stream, stop, clock).await;
                    drop((live, place));
                })
                .detach();
            }
            Some(Err(e)) => {
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(STOP_POLL_INTERVAL).await;
            }
        }
    }
    drop(listener);
    stop.notify(usize::MAX);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while connections.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
    tracing::info!(shard = shard.id, left = connections.get(), "drained");
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Finishing<RespBody>>, std::convert::Infallible>>>>;

async fn serve_connection(
    services: Rc<NodeServices>,
    cfg: Rc<ServerConfig>,
    stream: TcpStream,
    stop: Rc<Event>,
    clock: Rc<ConnClock>,
) {
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(cfg.idle_timeout)).is_err() {
        return;
    }
    let (node, shard_id) = (services.shard.node.clone(), services.shard.id);
    let peer = stream.peer_addr().ok().map(|a| crate::auth::Peer(a.ip()));
    let route_cfg = cfg.clone();
    let service_clock = clock.clone();
    let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let (services, cfg, clock) = (services.clone(), route_cfg.clone(), service_clock.clone());
        clock.request_started();
        if let Some(p) = peer {
            req.extensions_mut().insert(p);
        }
        Box::pin(async move {
            if clock.overflow && !matches!(req.uri().path(), "/_liveness" | "/_readiness") {
                let busy = crate::error::ApiError::new(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the node is at its connection limit with every connection in a request; retry",
                )
                .retry_after(1);
                return Ok(busy.into_response().map(|b| Finishing::new(b, clock)));
            }
            bump(&services.shard.stats().requests, 1);
            // The access log is for debugging: off, it costs no allocation.
            let logged = tracing::enabled!(tracing::Level::DEBUG)
                .then(|| (Instant::now(), req.method().clone(), req.uri().path().to_owned()));
            let mut resp = routes::route(&services, &cfg, req).await;
            if let Some((started, method, path)) = logged {
                // Paths carry no secrets (credentials travel in headers only).
                let head_us = started.elapsed().as_micros() as u64;
                tracing::debug!(shard = shard_id, %method, %path, status = resp.status().as_u16(), head_us, "request");
            }
            resp.headers_mut().insert("x-trove-shard", http::HeaderValue::from(shard_id));
            Ok(resp.map(|b| Finishing::new(b, clock)))
        }) as ServiceFuture
    });
    let mut conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEADER_BYTES)
        // Never poll the socket for EOF while a response is being written:
        // that read would trip the idle timeout on long downloads.
        .half_close(true)
        // An overflow connection gets one answer, then closes.
        .keep_alive(!clock.overflow)
        .serve_connection(
            HyperIo::new(Clocked::new(stream, clock.clone())).counted(node.stats[usize::from(shard_id)].clone()),
            service,
        );
    let stopped = stop.listen();
    let finished = if node.is_stopping() {
        Ending::Stop
    } else {
        let served = async { Ending::Served(poll_fn(|cx| conn.poll_without_shutdown(cx)).await) };
        let stop = async {
            stopped.await;
            Ending::Stop
        };
        // An overflow place is for a health check, which sends its head at
        // once: a client that does not must not hold the place.
        let (tick, head_timeout) = if clock.overflow {
            (OVERFLOW_HEAD_TIMEOUT, OVERFLOW_HEAD_TIMEOUT)
        } else {
            (DEADLINE_TICK, cfg.head_timeout)
        };
        let deadline = async {
            loop {
                glommio::timer::sleep(tick).await;
                if let Some(why) = clock.expired(head_timeout) {
                    return Ending::Expired(why);
                }
            }
        };
        let shed = async {
            clock.shed().await;
            Ending::Shed
        };
        futures_lite::future::or(served, futures_lite::future::or(stop, futures_lite::future::or(deadline, shed))).await
    };
    let result = match finished {
        Ending::Served(r) => r,
        Ending::Expired(why) => {
            tracing::debug!(shard = shard_id, ?why, "closing a connection that missed its deadline");
            bump(&node.stats[usize::from(shard_id)].slow_clients_closed, 1);
            return;
        }
        Ending::Shed => return,
        Ending::Stop => {
            // Finish the response in flight, then close; idle: close now.
            Pin::new(&mut conn).graceful_shutdown();
            poll_fn(|cx| conn.poll_without_shutdown(cx)).await
        }
    };
    match result {
        // An overflow connection does not linger: its place is for the next
        // health check.
        Ok(()) if !node.is_stopping() && !clock.overflow => {
            linger(conn.into_parts().io.into_inner().into_inner()).await
        }
        Ok(()) => {}
        Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
    }
}
/// How a connection's task ended.
enum Ending {
    Served(Result<(), hyper::Error>),
    Stop,
    Expired(crate::deadline::Expired),
    Shed,
}

/// This shard's share of the node's connection cap: `--max-connections`,
/// else the open-file limit less the descriptors kept in reserve, over
/// the descriptors a connection may hold in a request (its socket and the
/// file it streams to or from): counting the socket alone, ~19,000 PUTs in
/// flight ran the node out of descriptors, and accepts, health checks
/// included, failed.
fn connection_cap(cfg: &ServerConfig, shards: usize) -> usize {
    let total = cfg.max_connections.unwrap_or_else(|| {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
        (nofile.saturating_sub(FD_RESERVE) / FDS_PER_CONNECTION).max(64) as usize
    });
    (total / shards.max(1)).clamp(1, MAX_CONNECTIONS_PER_SHARD)
}

/// Whether the first bytes waiting on `stream` are a request for
/// `/_liveness` or `/_readiness` (a peek: nothing is read, nothing waits).
fn asks_for_health(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 24];
    let n = trove_engine::remote::hyper_io::peek_now(std::os::fd::AsRawFd::as_raw_fd(stream), &mut buf);
    let head = &buf[..n];
    [b"GET /_liveness".as_slice(), b"GET /_readiness", b"HEAD /_liveness", b"HEAD /_readiness"]
        .iter()
        .any(|p| head.starts_with(p))
}

/// See `limits::LINGER_TIME`.
async fn linger(stream: TcpStream) {
    use futures_lite::AsyncReadExt;
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let drain = async {
        let mut stream = stream;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        while total < LINGER_MAX_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    futures_lite::future::or(drain, glommio::timer::sleep(LINGER_TIME)).await;
}
