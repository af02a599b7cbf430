//! Resolving the S3 endpoint's host name without blocking the shard.
//!
//! `getaddrinfo` blocks, for seconds when a resolver is slow or away, and a
//! shard thread that blocks stops every connection it serves. [`Resolver`]
//! runs the lookup on a thread of its own, bounded by the connect timeout,
//! and keeps the answer for `RESOLVE_TTL`; when a lookup fails it serves the
//! last answer it had (a store that moved still answers at its old address
//! until the resolver is back). An IP literal never reaches a lookup.
//!
//! One per shard (inside the remote tier's client options): no locks.

use crate::remote::RemoteError;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a resolved address is used before it is looked up again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// The blocking lookup a resolver runs off the shard.
pub type Lookup = fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

fn system_lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// (host, port) to its addresses and when they were looked up.
type Cache = HashMap<(String, u16), (Vec<SocketAddr>, Instant)>;

/// Host name to addresses, looked up off the shard and cached.
pub struct Resolver {
    lookup: Lookup,
    cache: RefCell<Cache>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::with_lookup(system_lookup)
    }
}

impl Resolver {
    pub fn with_lookup(lookup: Lookup) -> Self {
        Self { lookup, cache: RefCell::new(HashMap::new()) }
    }

    /// The first address of `host:port`.
    pub async fn resolve(&self, host: &str, port: u16, timeout: Duration) -> Result<SocketAddr, RemoteError> {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_owned(), port);
        let cached = self.cache.borrow().get(&key).cloned();
        if let Some((addrs, at)) = &cached {
            if at.elapsed() < RESOLVE_TTL {
                return addrs.first().copied().ok_or_else(|| no_address(host, port));
            }
        }
        let endpoint = format!("{host}:{port}");
        let found = self.lookup_off_shard(host, port, timeout).await;
        match (found, cached) {
            (Ok(addrs), _) if !addrs.is_empty() => {
                let first = addrs[0];
                self.cache.borrow_mut().insert(key, (addrs, Instant::now()));
                Ok(first)
            }
            (Ok(_), None) => Err(no_address(host, port)),
            (Err(e), None) => Err(RemoteError::Connect { endpoint, reason: e }),
            (_, Some((stale, _))) => {
                tracing::warn!(endpoint = %endpoint, "the S3 endpoint's name did not resolve; using its last address");
                stale.first().copied().ok_or_else(|| no_address(host, port))
            }
        }
    }

    async fn lookup_off_shard(&self, host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
        let (tx, rx) = futures_channel::oneshot::channel();
        let (lookup, host_owned) = (self.lookup, host.to_owned());
        std::thread::Builder::new()
            .name("trove-resolve".into())
            .spawn(move || {
                let _ = tx.send(lookup(&host_owned, port).map_err(|e| e.to_string()));
            })
            .map_err(|e| format!("starting a resolver thread: {e}"))?;
        let answered = futures_lite::future::or(async { Some(rx.await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        match answered {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("the resolver thread died".into()),
            None => Err(format!("resolving took over {timeout:?}")),
        }
    }
}

fn no_address(host: &str, port: u16) -> RemoteError {
    RemoteError::Connect { endpoint: format!("{host}:{port}"), reason: "no address".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

    fn slow_lookup(_: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        LOOKUPS.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(500));
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }

    #[test]
    fn a_slow_lookup_leaves_the_shard_running_and_is_cached() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().expect("executor");
        ex.run(async {
            let r = Resolver::with_lookup(slow_lookup);
            let ticks = Rc::new(Cell::new(0u32));
            let t = ticks.clone();
            let ticker = glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    t.set(t.get() + 1);
                }
            });
            let addr = r.resolve("s3.store.test", 8333, Duration::from_secs(5)).await.expect("resolved");
            assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], 8333)));
            assert!(ticks.get() >= 20, "the executor ran {} ticks during a 500 ms lookup", ticks.get());
            let started = Instant::now();
            r.resolve("s3.store.test", 8333, Duration::from_secs(5)).await.expect("cached");
            assert!(started.elapsed() < Duration::from_millis(100), "the second resolve is cached");
            assert_eq!(LOOKUPS.load(Ordering::SeqCst), 1);
            let timed_out = r.resolve("other.store.test", 1, Duration::from_millis(50)).await;
            assert!(timed_out.is_err(), "a lookup past the timeout is an error");
            assert!(r.resolve("127.0.0.1", 9, Duration::ZERO).await.is_ok(), "an IP needs no lookup");
            drop(ticker);
        });
    }
}
