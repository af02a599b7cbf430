//! Clones served from one shared upload-pack run.
//!
//! A request that wants objects and has none (a clone) asks the repo's
//! owner for the run of its exact request (the engine's shared-packs service). The first one
//! takes an upload-pack slot and runs `git upload-pack --stateless-rpc`
//! into the run's file, in a task of its own that finishes even if its
//! client leaves; every request, the first included, streams that file as
//! it grows. So N identical clones at once cost one pack-objects and one
//! slot, and a clone repeated before the mirror changes costs none.
//!
//! A run that fails before its first byte answers every waiter with the
//! same JSON error as an unshared request; one that fails later ends every
//! follower's response after what it wrote (upload-pack's own ERR packet,
//! which git prints), and is not shared again.

use crate::body::RespBody;
use crate::error::repo_error;
use crate::error::ApiError;
use crate::limits::UPLOAD_PACK_READ_BYTES;
use crate::upload_pack::{upload_pack_cmd, upload_pack_slot};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use http::{header, Response, StatusCode};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use trove_engine::mirrors::Mirrors;
use trove_engine::packs::SharedPacks;
use trove_engine::packs::{request_id, PackClaim, PackRun};
use trove_engine::repo::archive::Progress;
use trove_engine::repo::RepoKey;
use trove_engine::stats::bump;
use trove_engine::Shard;

/// How often a request waiting for a run's first byte looks again.
const FIRST_BYTE_POLL: Duration = Duration::from_millis(1);

/// Serves a shareable upload-pack request of `key` from the shared run.
pub async fn serve(
    mirrors: &Mirrors,
    packs: &Rc<SharedPacks>,
    key: &RepoKey,
    mirror: &Path,
    protocol: Option<String>,
    (body, reservation): (Vec<u8>, crate::budget::Reservation),
) -> Result<Response<RespBody>, ApiError> {
    let id = request_id(protocol.as_deref(), &body);
    let held = (body, reservation);
    let run = match packs.pack_run(key, id, false).await.map_err(repo_error)? {
        Some(PackClaim::Follow(run) | PackClaim::Claimed(run)) => {
            // A follower needs its body no more: give its memory back.
            drop(held);
            run
        }
        None => {
            // Nobody runs it: take a slot first, so a claimed run always
            // has one, then claim (unless another request just did).
            let permit = upload_pack_slot(mirrors).await?;
            match packs.pack_run(key, id, true).await.map_err(repo_error)? {
                Some(PackClaim::Claimed(run)) => {
                    let (body, reservation) = held;
                    let task = pump(packs.shard().clone(), run.clone(), protocol, mirror.to_owned(), body);
                    glommio::spawn_local(async move {
                        task.await;
                        drop((permit, reservation));
                    })
                    .detach();
                    run
                }
                Some(PackClaim::Follow(run)) => {
                    drop(held);
                    run
                }
                None => {
                    return Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the repo's owner neither ran nor claimed the request; retry",
                    ))
                }
            }
        }
    };
    follow(run).await
}

/// Runs upload-pack into `run`'s file and marks it done or failed.
async fn pump(
    shard: Rc<Shard>,
    run: Arc<PackRun>,
    protocol: Option<String>,
    mirror: std::path::PathBuf,
    body: Vec<u8>,
) {
    bump(&shard.stats().upload_pack_runs, 1);
    match write_run(&run, protocol.as_deref(), &mirror, body).await {
        Ok(len) => run.build.mark_done(len),
        Err(why) => {
            tracing::warn!(error = %why, "a shared upload-pack run failed");
            let _ = run.error.set(why);
            // What it did say (an ERR packet, say) reaches every follower
            // whole, as from git http-backend; the run is not shared again.
            match run.build.bytes_written() {
                0 => run.build.mark_failed(),
                said => run.build.mark_done(said),
            }
        }
    }
}

async fn write_run(run: &PackRun, protocol: Option<&str>, mirror: &Path, body: Vec<u8>) -> Result<u64, String> {
    let mut proc = upload_pack_cmd(protocol, &[], mirror).spawn_streaming().map_err(|e| e.to_string())?;
    let mut stdin = proc.stdin.take().expect("spawned with a stdin");
    glommio::spawn_local(async move {
        // upload-pack may stop reading early (an error): ignore EPIPE.
        let _ = stdin.write_all(&body).await;
        let _ = stdin.close().await;
    })
    .detach();
    let file = run.build.async_writer().map_err(|e| format!("opening the response file: {e}"))?;
    let mut pos = 0u64;
    let copied = async {
        loop {
            let mut buf = vec![0u8; UPLOAD_PACK_READ_BYTES];
            let n = proc.stdout.read(&mut buf).await.map_err(|e| format!("reading upload-pack: {e}"))?;
            if n == 0 {
                return Ok::<(), String>(());
            }
            buf.truncate(n);
            file.write_at(buf, pos).await.map_err(|e| format!("writing the response file: {e}"))?;
            pos += n as u64;
            run.build.written(pos);
        }
    }
    .await;
    let _ = file.close().await;
    let (status, stderr) = proc.exit().await.map_err(|e| e.to_string())?;
    copied?;
    if !status.success() {
        let msg = stderr.trim().lines().last().unwrap_or("no output").to_owned();
        return Err(format!("git upload-pack refused the request ({status}): {msg}"));
    }
    Ok(pos)
}

/// The run's response: a JSON error if it failed before its first byte,
/// else its bytes as they are written.
async fn follow(run: Arc<PackRun>) -> Result<Response<RespBody>, ApiError> {
    while run.build.bytes_written() == 0 && run.build.len_if_done().is_none() {
        if run.build.failed() {
            let msg = run.error.get().cloned().unwrap_or_else(|| "git upload-pack failed".into());
            return Err(ApiError::bad_request("upload_pack_failed", msg));
        }
        glommio::timer::sleep(FIRST_BYTE_POLL).await;
    }
    let stream = run.build.clone().follow().map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io_error", format!("following the pack response: {e}"))
    })?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-git-upload-pack-result")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(RespBody::bytes_stream(stream))
        .expect("static response parts are valid"))
}
