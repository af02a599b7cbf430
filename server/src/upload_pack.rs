//! What every upload-pack run shares, whoever serves it (git.rs, a shared
//! clone in shared_pack.rs): its command line, the client's protocol
//! version, and a slot in the node's admission.

use crate::error::ApiError;
use http::{Request, StatusCode};
use trove_engine::mirrors::Mirrors;
use trove_engine::repo::git::Git;

/// Retry-After given with a 503 when every upload-pack slot and the queue
/// are taken, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// The `Git-Protocol` header, if it is well formed (`version=2` and the
/// like); anything else is ignored, as git itself does.
pub(crate) fn git_protocol<B>(req: &Request<B>) -> Option<String> {
    let v = req.headers().get("git-protocol")?.to_str().ok()?;
    let ok = v.len() <= 256 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"=:._-".contains(&b));
    ok.then(|| v.to_owned())
}

pub(crate) fn upload_pack_cmd(protocol: Option<&str>, extra: &[&str], dir: &std::path::Path) -> Git {
    let mut args = vec!["upload-pack", "--stateless-rpc"];
    args.extend_from_slice(extra);
    args.push(".");
    let g = Git::new(args).dir(dir);
    match protocol {
        Some(p) => g.env("GIT_PROTOCOL", p),
        None => g,
    }
}

/// One of the node's upload-pack slots, waiting in the bounded queue; a
/// 503 with Retry-After when the queue is full.
pub(crate) async fn upload_pack_slot(mirrors: &Mirrors) -> Result<trove_engine::repo::admission::Permit, ApiError> {
    mirrors.upload_packs().enter().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "every upload-pack slot and the queue are taken; retry after the Retry-After seconds",
        )
        .retry_after(RETRY_AFTER_SECS)
    })
}
