//! Node-wide read-only pages: `/api/v1/stats` (JSON), `/metrics`
//! (Prometheus text), `/_liveness`, `/_readiness`. Every shard answers them
//! from the shared atomic counters, with no cross-shard hop.

use crate::body::RespBody;
use http::{header, Response, StatusCode};
use std::fmt::Write;
use trove_engine::NodeShared;

pub fn stats_json(node: &NodeShared) -> Response<RespBody> {
    let shards: Vec<_> = node.stats.iter().map(|s| s.snapshot()).collect();
    let sum = |name: &str| -> u64 {
        shards.iter().flat_map(|s| s.iter()).filter(|(n, _, _)| *n == name).map(|(_, _, v)| v).sum()
    };
    let json = serde_json::json!({
        "tiers": {
            "local": {
                "hits": sum("local_hits"),
                "misses": sum("local_misses"),
                "bytes_read": sum("local_bytes_read"),
                "bytes_written": sum("local_bytes_written"),
                "objects": sum("local_objects"),
                "used_bytes": sum("local_used_bytes"),
                "capacity_bytes": node.config.local_capacity_bytes,
                "evictions": sum("evictions"),
                "expirations": sum("expirations"),
                "checksum_failures": sum("checksum_failures"),
            },
            "remote": {
                "enabled": node.config.remote.is_some(),
                "hits": sum("remote_hits"),
                "misses": sum("remote_misses"),
                "get_requests": sum("remote_get_requests"),
                "put_requests": sum("remote_put_requests"),
                "bytes_read": sum("remote_bytes_read"),
                "bytes_written": sum("remote_bytes_written"),
                "errors": sum("remote_errors"),
                "singleflight_followers": sum("singleflight_followers"),
            }
        },
        "send": {
            "sendfile_bytes": sum("sendfile_bytes"),
            "sends_socket_full": sum("sends_socket_full"),
        },
        "git": {
            "snapshot_builds": sum("snapshot_builds"),
            "bundle_builds": sum("bundle_builds"),
            "mirror_restores": sum("mirror_restores"),
            "upstream_clones": sum("upstream_clones"),
            "upstream_fetches": sum("upstream_fetches"),
            "passthrough_requests": sum("passthrough_requests"),
            "mirror_upkeeps": sum("mirror_upkeeps"),
            "tree_indexes": sum("tree_indexes"),
            "blob_requests": sum("blob_requests"),
            "blobs_served": sum("blobs_served"),
            "blob_cache_hits": sum("blob_cache_hits"),
            "mirror_evictions": sum("mirror_evictions"),
            "mirror_bytes": sum("mirror_bytes"),
            "upload_pack_runs": sum("upload_pack_runs"),
            "pack_cache_follows": sum("pack_cache_follows"),
            "repo_states": sum("repo_states"),
            "upstream_jobs_refused": sum("upstream_jobs_refused"),
        },
        "shards": shards.iter().enumerate().map(|(id, s)| {
            let mut m = serde_json::Map::new();
            m.insert("id".into(), id.into());
            for (name, _, v) in s {
                m.insert((*name).into(), (*v).into());
            }
            serde_json::Value::Object(m)
        }).collect::<Vec<_>>(),
    });
    text(StatusCode::OK, "application/json", json.to_string())
}

pub fn metrics(node: &NodeShared) -> Response<RespBody> {
    let mut out = String::new();
    let shards: Vec<_> = node.stats.iter().map(|s| s.snapshot()).collect();
    if let Some(first) = shards.first() {
        for (i, (name, doc, _)) in first.iter().enumerate() {
            let kind =
                if matches!(*name, "local_objects" | "local_used_bytes" | "repo_states") { "gauge" } else { "counter" };
            let metric = if kind == "counter" { format!("trove_{name}_total") } else { format!("trove_{name}") };
            let _ = writeln!(out, "# HELP {metric} {doc}\n# TYPE {metric} {kind}");
            for (id, s) in shards.iter().enumerate() {
                let _ = writeln!(out, "{metric}{{shard=\"{id}\"}} {}", s[i].2);
            }
        }
    }
    let _ = writeln!(out, "# HELP trove_local_capacity_bytes configured local tier capacity\n# TYPE trove_local_capacity_bytes gauge\ntrove_local_capacity_bytes {}", node.config.local_capacity_bytes);
    text(StatusCode::OK, "text/plain; version=0.0.4", out)
}

pub fn liveness() -> Response<RespBody> {
    text(StatusCode::OK, "text/plain", "ok\n".into())
}

pub fn readiness(node: &NodeShared) -> Response<RespBody> {
    if node.is_ready() {
        text(StatusCode::OK, "text/plain", "ready\n".into())
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready: starting or draining\n".into())
    }
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<RespBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype)
        .header(header::CONTENT_LENGTH, body.len())
        .body(RespBody::full(body))
        .expect("valid")
}
