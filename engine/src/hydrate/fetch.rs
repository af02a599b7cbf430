//! One hydration batch: `POST /git/{repo}/blobs` for many ids, each blob
//! landed as it streams in.
//!
//! A blob's bytes go through a DMA stream writer (O_DIRECT, io_uring,
//! bounded write-behind) into the store's `tmp/` while SHA-1 runs over
//! them; on its last byte the hash is compared with the id and only a
//! match is published. Small blobs (most of a source tree) are gathered
//! whole and land through the page cache on the executor's blocking
//! thread (see `land_group` for why), so the shard never waits on them. No fdatasync: the id proves the blob on the next
//! start (blobstore.rs). A wrong blob costs only itself; a broken stream
//! fails every blob not yet landed, and the queue may ask again. A batch
//! has a deadline that grows with its bytes (HYDRATE_MIN_BYTES_PER_SEC)
//! beside `--fetch-timeout` for each gap, so a trickling node cannot hold
//! an open.
//!
//! Runs on the owner shard's executor; it never blocks it on a read.

use super::blobstore::BlobStore;
use super::config::HydrateConfig;
use super::error::HydrateError;
use super::frames::{refusal, Event, FrameReader};
use super::want::{hex, Oid};
use crate::limits::{
    HYDRATE_LANDING_GROUPS, HYDRATE_MIN_BYTES_PER_SEC, HYDRATE_SMALL_BLOB_BYTES, HYDRATE_WRITE_BUFFER_BYTES,
};
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

/// Small blobs that landed, each with its outcome.
type Landed = Vec<(Oid, Result<(), HydrateError>)>;

/// Lands small blobs that arrived whole, in one call on the executor's
/// blocking thread pool: each checked against its id, then written in
/// place through the page cache (`BlobStore::land_in_place`). The page cache, not O_DIRECT, because the
/// kernel reads it right back through passthrough: an O_DIRECT landing
/// made that first read a disk read, and its ftruncate (the padded last
/// block) cost ~0.5 ms a blob, on the shard thread. A group is what one
/// frame of the node's stream completed: one hop to a blocking thread and
/// back for all of them, where one hop per blob (two cross-thread wakes,
/// ~60 us each here) made landing the cold read's bottleneck.
async fn land_group(store: std::sync::Arc<BlobStore>, group: Vec<(Oid, Vec<u8>)>) -> Landed {
    glommio::executor()
        .spawn_blocking(move || group.into_iter().map(|(oid, bytes)| (oid, land_one(&store, &oid, &bytes))).collect())
        .await
}

fn land_one(store: &BlobStore, oid: &Oid, bytes: &[u8]) -> Result<(), HydrateError> {
    if !crate::tree::blobs::matches(oid, bytes) {
        tracing::warn!(oid = %hex(oid), "the node sent bytes that do not match the blob's id; dropped");
        return Err(HydrateError::Corrupt(hex(oid)));
    }
    store.land_in_place(oid, bytes)
}

/// What the stream loop waits for next.
enum Next {
    Frame(Option<Result<http_body::Frame<Bytes>, hyper::Error>>),
    Landed(Landed),
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
    // A small blob is gathered whole, then lands off the shard thread with
    // the others its frame completed (`land_group`): one after another on
    // the shard (create, write, truncate, rename: ~2 ms each here) they
    // cost a whole-tree read 10x ext4's time.
    let mut gathering: Option<(Oid, Vec<u8>)> = None;
    // Small blobs this frame completed, and groups landing (their answers
    // come back on `landed`, and are given as soon as they do: a read's
    // blob, first in its batch, is answered before the batch ends).
    let mut group: Vec<(Oid, Vec<u8>)> = Vec::new();
    let (landed_tx, landed_rx) = glommio::channels::local_channel::new_unbounded::<Landed>();
    let landed_tx = std::rc::Rc::new(landed_tx);
    let mut landing_groups = 0usize;
    let mut disk = std::time::Duration::ZERO;
    let outcome = async {
        while !frames.ended() {
            let next = loop {
                let waiting = landing_groups;
                let frame = async { Ok(Next::Frame(body.frame().await)) };
                let landed = async {
                    if waiting == 0 {
                        std::future::pending::<()>().await;
                    }
                    Ok(Next::Landed(landed_rx.recv().await.unwrap_or_default()))
                };
                let gap = async {
                    glommio::timer::sleep(timeout).await;
                    Err(HydrateError::Timeout(timeout))
                };
                let waited = futures_lite::future::or(futures_lite::future::or(frame, landed), gap).await?;
                match waited {
                    Next::Frame(f) => break f,
                    Next::Landed(landed) => {
                        landing_groups -= 1;
                        for (oid, r) in landed {
                            on_blob(oid, r);
                        }
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
                // Memory: at most HYDRATE_LANDING_GROUPS groups of what a frame
                // holds, beside the frame being read.
                while landing_groups >= HYDRATE_LANDING_GROUPS {
                    let t = std::time::Instant::now();
                    let landed = landed_rx.recv().await.unwrap_or_default();
                    disk += t.elapsed();
                    landing_groups -= 1;
                    for (oid, r) in landed {
                        on_blob(oid, r);
                    }
                }
                let (tx, store, g) = (landed_tx.clone(), store.clone(), std::mem::take(&mut group));
                landing_groups += 1;
                glommio::spawn_local(async move {
                    let _ = tx.try_send(land_group(store, g).await);
                })
                .detach();
            }
        }
        Ok(())
    };
    let outcome = futures_lite::future::or(outcome, too_slow(started, deadline, batch_bytes)).await;
    // What landed is answered also when the stream broke after it.
    while landing_groups > 0 {
        landing_groups -= 1;
        for (oid, r) in landed_rx.recv().await.unwrap_or_default() {
            on_blob(oid, r);
        }
    }
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
