//! A cold node's mirror, restored from the mirror snapshot in the tiers
//! (the bare repo as tar.zst, which the snapshot builder uploads) instead
//! of cloned. The archive is hostile input: it is unpacked by
//! `repo::unpack` keeping only the repo's data, never its config or hooks.

use super::service::Mirrors;
use crate::repo::archive;
use crate::repo::names::mirror_object;
use crate::repo::{off_shard, RepoError, RepoKey};
use crate::stats::bump;
use futures_lite::StreamExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest a mirror restore waits for the cold serves it would compete with.
const COLD_SERVE_WAIT_MAX: Duration = Duration::from_secs(600);

impl Mirrors {
    /// Restores `key`'s mirror into `dir` from the mirror snapshot in the
    /// tiers, keeping only the repo's data (`untrusted::mirror_entry`): the
    /// caller writes its config. Returns the object format the snapshot's
    /// config named, or None when there is no snapshot. Waits first for the
    /// repo's cold serves, so the restore does not compete with them for the
    /// disk.
    pub(super) async fn restore_mirror(
        self: &Rc<Self>,
        key: &RepoKey,
        dir: &Path,
    ) -> Result<Option<&'static str>, RepoError> {
        let cold = self.with_repo(key, |st| st.cold_serves.clone());
        let waited = Instant::now();
        while cold.load(Ordering::Acquire) > 0 && waited.elapsed() < COLD_SERVE_WAIT_MAX {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let found = self.objects.open_object(&mirror_object(key)).await.map_err(|e| RepoError::Io(e.to_string()))?;
        let Some((obj, _)) = found else { return Ok(None) };
        let len = obj.meta.data_len;
        std::fs::create_dir_all(dir).map_err(|e| RepoError::Io(format!("creating {}: {e}", dir.display())))?;
        // The shard streams the bytes; a thread unpacks them.
        let (mut tx, rx) = futures_channel::mpsc::channel::<bytes::Bytes>(8);
        let d = dir.to_owned();
        let unpack = off_shard("trove-mirror-restore", move || {
            crate::repo::unpack::unpack_safely(
                archive::ChannelReader::new(rx),
                &d,
                1,
                crate::repo::untrusted::mirror_entry,
            )
        });
        let feed = async {
            let mut stream = std::pin::pin!(self.objects.stream_object(obj, 0, len));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| RepoError::Io(e.to_string()))?;
                let b = bytes::Bytes::copy_from_slice(bytes::Buf::chunk(&chunk));
                if futures_lite::future::poll_fn(|cx| tx.poll_ready(cx)).await.is_err() || tx.start_send(b).is_err() {
                    break; // the unpacker stopped; its error says why
                }
            }
            tx.close_channel();
            Ok::<(), RepoError>(())
        };
        let (fed, unpacked) = futures_lite::future::zip(feed, unpack).await;
        fed?;
        let unpacked = unpacked?.map_err(|e| RepoError::Io(format!("unpacking the mirror snapshot: {e}")))?;
        let config = unpacked.captured.iter().find(|(p, _)| p == Path::new("config")).map(|(_, c)| c.as_slice());
        let format = crate::repo::untrusted::object_format(config.unwrap_or_default())
            .ok_or_else(|| RepoError::Io("the mirror snapshot names an unknown object format".into()))?;
        bump(&self.shard.stats().mirror_restores, 1);
        Ok(Some(format))
    }
}
