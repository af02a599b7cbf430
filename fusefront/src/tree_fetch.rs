//! The tree a mount serves, from its node: the tree index fetched
//! (`GET .../tree/{commit}` or `?ref=`), checked and built into the inode
//! table; and, while the node clones a repo new to it, how far the clone
//! got (`GET .../progress`). Every byte is from the network: bounded,
//! never a redirect followed. It never touches FUSE or the gate.

use crate::limits::*;
use crate::options::{MountError, MountOptions, Revision};
use crate::table::Table;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// How far the node's clone of the repo got, if it is cloning it: bytes
/// received and seconds since it started (`GET .../progress`; any failure
/// to ask is no progress).
pub(crate) fn clone_progress(options: &MountOptions) -> Option<(u64, f64)> {
    let url = format!("{}/git/{}/progress", options.node.trim_end_matches('/'), options.repo);
    let agent = ureq::AgentBuilder::new().timeout(PROGRESS_POLL).redirects(0).build();
    let mut req = agent.get(&url);
    if let Some(auth) = &options.auth {
        req = req.set("authorization", auth.expose());
    }
    let mut body = Vec::new();
    req.call().ok()?.into_reader().take(4096).read_to_end(&mut body).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    if v["cloning"] != true {
        return None;
    }
    Some((v["bytes_received"].as_u64()?, v["seconds"].as_f64().unwrap_or(0.0)))
}

/// Fetches the tree index and builds the inode table.
pub(crate) fn prepare(options: &MountOptions) -> Result<Arc<Table>, MountError> {
    let base = format!("{}/git/{}/tree", options.node.trim_end_matches('/'), options.repo);
    let url = match &options.revision {
        Revision::Commit(c) => format!("{base}/{c}"),
        Revision::Ref(r) => format!("{base}?ref={}", url_escape(r)),
    };
    // Never a redirect: the node's answer is the index, from the node.
    // No overall timeout here: the caller fails the mount at the gate's
    // deadline, which moves while the node reports progress.
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(options.fetch_timeout.min(Duration::from_secs(5)))
        .redirects(0)
        .build();
    let mut req = agent.get(&url);
    if let Some(auth) = &options.auth {
        req = req.set("authorization", auth.expose());
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(status, r)) => {
            // The node's JSON error, as its sentence; at most 64 KiB read.
            let mut body = Vec::new();
            let _ = r.into_reader().take(64 << 10).read_to_end(&mut body);
            let message = trove_engine::node_error::node_message(&body);
            return Err(if status == 404 {
                MountError::NotFound(format!("the node has no such repo, ref or commit: {message}"))
            } else {
                MountError::Node { status, message }
            });
        }
        Err(e) => return Err(MountError::Unreachable { node: options.node.clone(), reason: e.to_string() }),
    };
    if resp.status() != 200 {
        return Err(MountError::Node {
            status: resp.status(),
            message:
                "a redirect; a mount never follows one (it could lead anywhere): pass the node's own URL as --node"
                    .into(),
        });
    }
    let mut compressed = Vec::new();
    resp.into_reader().take(TREE_INDEX_DOWNLOAD_MAX_BYTES + 1).read_to_end(&mut compressed).map_err(|e| {
        MountError::Unreachable { node: options.node.clone(), reason: format!("reading the tree index: {e}") }
    })?;
    if compressed.len() as u64 > TREE_INDEX_DOWNLOAD_MAX_BYTES {
        return Err(MountError::BadIndex(format!("it is over {TREE_INDEX_DOWNLOAD_MAX_BYTES} bytes")));
    }
    let index = trove_engine::tree::index::decode(&compressed).map_err(|e| MountError::BadIndex(e.to_string()))?;
    if let Revision::Commit(c) = &options.revision {
        if trove_engine::tree::oid_hex(&index.commit) != c.to_ascii_lowercase() {
            return Err(MountError::BadIndex(format!(
                "it is for commit {}, not {c}",
                trove_engine::tree::oid_hex(&index.commit)
            )));
        }
    }
    Table::build(index).map(Arc::new).map_err(MountError::BadIndex)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
