//! Blocking work (archiving, unpacking, walking a tree) on a thread of its
//! own, awaited without blocking the shard.

use super::error::RepoError;

/// Runs blocking work (archiving, unpacking) on a thread of its own and
/// awaits its result without blocking the shard.
pub async fn off_shard<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, RepoError> {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| RepoError::Io(format!("starting {name}: {e}")))?;
    rx.await.map_err(|_| RepoError::Io(format!("the {name} thread died")))
}
