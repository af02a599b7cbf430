//! One hydration batch: `POST /git/{repo}/blobs` for many ids, each blob
//! landed as it streams in.
//!
//! A blob's bytes go through a DMA stream writer (O_DIRECT, io_uring,
//! bounded write-behind) into the store's `tmp/` while SHA-1 runs over
//! them; on its last byte the hash is compared with the id and only a
//! match is published. Small blobs (most of a source tree) are gathered
//! whole and land in the store's slab through the page cache, a frame's
//! worth at a time (see `land_group`). No fdatasync: the id proves the blob on the next
//! start (`blobstore`). A wrong blob costs only itself; a broken stream
//! fails every blob not yet landed, and the queue may ask again. A batch
//! has a deadline that grows with its bytes (HYDRATE_MIN_BYTES_PER_SEC)
//! beside `--fetch-timeout` for each gap, so a trickling node cannot hold
//! an open.
//!
//! Runs on the owner shard's executor; it never blocks it on a read (its
//! one synchronous write is a frame's small blobs into the page cache).

use super::blobstore::BlobStore;
use super::config::HydrateConfig;
use super::error::HydrateError;
use super::frames::{refusal, Event, FrameReader};
use super::want::{hex, Oid};
use crate::limits::{HYDRATE_MIN_BYTES_PER_SEC, HYDRATE_SMALL_BLOB_BYTES, HYDRATE_WRITE_BUFFER_BYTES};
use crate::remote::http::{read_small, send, ClientOptions};
use crate::remote::RemoteError;
use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriter, DmaStreamWriterBuilder};
use http_body_util::BodyExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How the owner reaches the node.
pub fn client_options(config: &HydrateConfig) -> Result<ClientOptions, HydrateError> {
    let tls = match config.node.scheme() {
        "http" => None,
        "https" => Some(
            crate::remote::tls::client_config(None).map_err(|e| HydrateError::Protocol(format!("TLS setup: {e}")))?,
        ),
        other => return Err(HydrateError::Protocol(format!("node URL scheme {other:?}: use http:// or https://"))),
    };
    Ok(ClientOptions {
        connect: config.fetch_timeout.min(Duration::from_secs(5)),
        response: config.fetch_timeout,
        tls,
        resolver: Default::default(),
        ca_hint: "the node's certificate must chain to a public CA",
    })
}

fn from_remote(node: &str, e: RemoteError, timeout: Duration) -> HydrateError {
    match e {
        RemoteError::Connect { reason, .. } => HydrateError::Unreachable { node: node.to_owned(), reason },
        RemoteError::Timeout { .. } => HydrateError::Timeout(timeout),
        RemoteError::Http { reason, .. } => HydrateError::Unreachable { node: node.to_owned(), reason },
        other => HydrateError::Protocol(other.to_string()),
    }
}

/// A blob being written.
struct Landing {
    oid: Oid,
    len: u64,
    tmp: PathBuf,
    writer: DmaStreamWriter,
    hasher: gix::hash::Hasher,
}

/// Fetches `batch` (id and index size, in order) and lands each blob,
/// calling `on_blob` once per id with its outcome.
pub async fn run_batch(
    config: &HydrateConfig,
    client: &ClientOptions,
    store: &std::sync::Arc<BlobStore>,
    batch: Vec<(Oid, u64)>,
    on_blob: &mut dyn FnMut(Oid, Result<(), HydrateError>),
) {
    // A blob the index says is larger than the whole cache could never be
    // kept: refused before a byte of it lands in tmp/ (the index is the
    // node's word, and a lie about a size must not fill the disk).
    let capacity = store.capacity_bytes();
    let (batch, too_large): (Vec<_>, Vec<_>) = batch.into_iter().partition(|(_, len)| *len <= capacity);
    for (oid, len) in too_large {
        on_blob(oid, Err(HydrateError::LargerThanCache { oid: hex(&oid), len, capacity }));
    }
    if batch.is_empty() {
        return;
    }
    let mut unanswered: Vec<Oid> = batch.iter().map(|(o, _)| *o).collect();
    let result = stream_batch(config, client, store, batch, &mut |oid, r| {
        if let Some(i) = unanswered.iter().position(|o| *o == oid) {
            unanswered.swap_remove(i);
        }
        on_blob(oid, r)
    })
    .await;
    if let Err(e) = result {
        for oid in unanswered {
            on_blob(oid, Err(e.clone()));
        }
    }
}

/// Lands small blobs that arrived whole, on the shard thread: each
/// checked against its id, then those that match appended to the store's
/// slab together (`BlobStore::land`) through the page cache, and
/// each one's outcome given to `on_blob`. The page cache, not O_DIRECT,
/// because the kernel reads them right back. On the shard, not a blocking
/// thread: with no file to create per blob, a group (what one frame of the
/// node's stream completed) is a hash and one write of at most a few
/// hundred KiB, and handing it to a thread and back (two cross-thread
/// wakes, the executor parked between) cost the mount more CPU than the
/// landing itself (a cold 8-reader read of git/git: 0.36 s on the shard
/// against 0.46 s through the thread pool, the mount's CPU 0.24 s against
/// 0.37 s).
fn land_group(store: &BlobStore, group: &[(Oid, Vec<u8>)], on_blob: &mut dyn FnMut(Oid, Result<(), HydrateError>)) {
    let mut good: Vec<(Oid, &[u8])> = Vec::with_capacity(group.len());
    for (oid, bytes) in group {
        if crate::tree::blobs::matches(oid, bytes) {
            good.push((*oid, bytes));
        } else {
            tracing::warn!(oid = %hex(oid), "the node sent bytes that do not match the blob's id; dropped");
            on_blob(*oid, Err(HydrateError::Corrupt(hex(oid))));
        }
    }
    let landed = store.land(&good);
    for (oid, _) in good {
        on_blob(oid, landed.clone());
    }
}

/// What the stream loop waits for next.
enum Next {
    Frame(Option<Result<http_body::Frame<Bytes>, hyper::Error>>),
    /// The gap timer fired: the stream may have gone quiet.
    GapTimer,
}

async fn stream_batch(
    config: &HydrateConfig,
    client: &ClientOptions,
    store: &std::sync::Arc<BlobStore>,
    batch: Vec<(Oid, u64)>,
    on_blob: &mut dyn FnMut(Oid, Result<(), HydrateError>),
) -> Result<(), HydrateError> {
    let node = config.node.as_str().trim_end_matches('/').to_owned();
    let url = url::Url::parse(&format!("{node}/git/{}/blobs", config.repo))
        .map_err(|e| HydrateError::Protocol(format!("the blobs URL: {e}")))?;
    let mut body = String::with_capacity(batch.len() * 41);
    for (oid, _) in &batch {
        body.push_str(&hex(oid));
        body.push('\n');
    }
    let mut headers = vec![("content-type", "text/plain".to_owned())];
    if let Some(auth) = &config.auth {
        headers.push(("authorization", auth.expose().to_owned()));
    }
    let timeout = config.fetch_timeout;
    let started = std::time::Instant::now();
    let asked = batch.len();
    // The whole batch's deadline, beside each gap's: see HYDRATE_MIN_BYTES_PER_SEC.
    let batch_bytes: u64 = batch.iter().map(|(_, len)| *len).sum();
    let overall = timeout + Duration::from_secs_f64(batch_bytes as f64 / HYDRATE_MIN_BYTES_PER_SEC as f64);
    let deadline = started + overall;
    let sent = send("POST blobs", http::Method::POST, &url, &headers, Bytes::from(body), client);
    let resp = futures_lite::future::or(
        async { sent.await.map_err(|e| from_remote(&node, e, timeout)) },
        too_slow(started, deadline, batch_bytes),
    )
    .await?;
    let status = resp.status().as_u16();
    if status != 200 {
        let text = read_small("POST blobs", resp.into_body(), 4096, timeout).await.unwrap_or_default();
        return Err(HydrateError::Status { status, message: crate::node_error::node_message(&text) });
    }
    let head_after = started.elapsed();
    let mut frames = FrameReader::new(batch);
    let mut body = resp.into_body();
    let mut landing: Option<Landing> = None;
    // A small blob is gathered whole, then lands with the others its frame
    // completed (`land_group`), and is answered then: a read's blob, first
    // in its batch, is answered before the batch ends.
    let mut gathering: Option<(Oid, Vec<u8>)> = None;
    let mut group: Vec<(Oid, Vec<u8>)> = Vec::new();
    let mut disk = std::time::Duration::ZERO;
    // The gap allowed between frames: one timer, re-armed only when it
    // fires with frames having come meanwhile (a timer armed and cancelled
    // per frame was a good part of this loop's CPU).
    let mut last_frame = Instant::now();
    let mut gap = Box::pin(glommio::timer::sleep(timeout));
    let outcome = async {
        while !frames.ended() {
            let next = loop {
                let frame = async { Next::Frame(body.frame().await) };
                let gap_ended = async {
                    gap.as_mut().await;
                    Next::GapTimer
                };
                match futures_lite::future::or(frame, gap_ended).await {
                    Next::GapTimer => {
                        let quiet = last_frame.elapsed();
                        if quiet >= timeout {
                            return Err(HydrateError::Timeout(timeout));
                        }
                        gap.set(glommio::timer::sleep(timeout - quiet));
                    }
                    Next::Frame(f) => {
                        last_frame = Instant::now();
                        break f;
                    }
                }
            };
            let mut chunk = match next {
                None => return Err(HydrateError::Protocol("the stream was cut before its end frame".into())),
                Some(Err(e)) => return Err(HydrateError::Unreachable { node: node.clone(), reason: e.to_string() }),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            while let Some(event) = frames.next(&mut chunk)? {
                match event {
                    Event::Begin { oid, len } if len <= HYDRATE_SMALL_BLOB_BYTES => {
                        gathering = Some((oid, Vec::with_capacity(len as usize)));
                    }
                    Event::Begin { oid, len } => {
                        let t = std::time::Instant::now();
                        landing = Some(begin(store, oid, len).await?);
                        disk += t.elapsed();
                    }
                    Event::Data(bytes) => match (&mut gathering, &mut landing) {
                        (Some((_, whole)), _) => whole.extend_from_slice(&bytes),
                        (None, Some(l)) => {
                            l.hasher.update(&bytes);
                            l.writer.write_all(&bytes).await.map_err(|e| HydrateError::store("writing", &l.tmp, e))?;
                        }
                        (None, None) => unreachable!("Data follows Begin"),
                    },
                    Event::Complete { oid } => {
                        if let Some((small, whole)) = gathering.take() {
                            debug_assert_eq!(small, oid);
                            group.push((oid, whole));
                            continue;
                        }
                        let l = landing.take().expect("Complete follows Begin");
                        let t = std::time::Instant::now();
                        let r = complete(store, l).await;
                        disk += t.elapsed();
                        on_blob(oid, r);
                    }
                    Event::Refused { oid, status } => {
                        let e = if status == 1 {
                            HydrateError::Missing(hex(&oid))
                        } else {
                            HydrateError::Refused { oid: hex(&oid), why: refusal(status) }
                        };
                        on_blob(oid, Err(e));
                    }
                    Event::End => {}
                }
            }
            if !group.is_empty() {
                let t = std::time::Instant::now();
                land_group(store, &group, on_blob);
                group.clear();
                disk += t.elapsed();
            }
        }
        Ok(())
    };
    let outcome = futures_lite::future::or(outcome, too_slow(started, deadline, batch_bytes)).await;
    if let Some(mut l) = landing {
        let _ = l.writer.close().await;
        let _ = std::fs::remove_file(&l.tmp);
    }
    tracing::debug!(
        blobs = asked,
        head_us = head_after.as_micros() as u64,
        total_us = started.elapsed().as_micros() as u64,
        disk_us = disk.as_micros() as u64,
        "hydration batch"
    );
    outcome
}

/// Resolves at `deadline` with the error of a batch of `bytes` that came
/// slower than HYDRATE_MIN_BYTES_PER_SEC since `started`.
async fn too_slow<T>(started: Instant, deadline: Instant, bytes: u64) -> Result<T, HydrateError> {
    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
    Err(HydrateError::TooSlow { bytes, min_rate: HYDRATE_MIN_BYTES_PER_SEC, after: started.elapsed() })
}

async fn begin(store: &BlobStore, oid: Oid, len: u64) -> Result<Landing, HydrateError> {
    let tmp = store.tmp_path(&oid);
    let file = DmaFile::create(&tmp).await.map_err(|e| HydrateError::store("creating", &tmp, e))?;
    let writer = DmaStreamWriterBuilder::new(file)
        .with_buffer_size(HYDRATE_WRITE_BUFFER_BYTES)
        .with_write_behind(2)
        .with_sync_on_close_disabled(true)
        .build();
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(format!("blob {len}\0").as_bytes());
    Ok(Landing { oid, len, tmp, writer, hasher })
}

/// Closes a landed blob (the writer trims the file to its length) and
/// publishes it if it is what its id says.
async fn complete(store: &BlobStore, l: Landing) -> Result<(), HydrateError> {
    let Landing { oid, len, tmp, mut writer, hasher } = l;
    let closed = writer.close().await;
    let matched = hasher.try_finalize().is_ok_and(|h| h.as_bytes() == oid.as_slice());
    if let Err(e) = closed {
        let _ = std::fs::remove_file(&tmp);
        return Err(HydrateError::store("writing", &tmp, e));
    }
    if !matched {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(oid = %hex(&oid), "the node sent bytes that do not match the blob's id; dropped");
        return Err(HydrateError::Corrupt(hex(&oid)));
    }
    store.publish(&tmp, &oid, len)
}
