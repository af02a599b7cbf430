//! The remote tier: any S3-compatible store (AWS S3, SeaweedFS, MinIO,
//! Garage, Ceph RGW), shared by every node.
//!
//! Requests are signed sans-IO with rusty-s3 (presigned URLs, SigV4) and
//! sent by the shard's own HTTP client (http.rs), so no second async runtime
//! runs inside a shard. An object in S3 is byte for byte the sealed local
//! file (store/format.rs), stored under `{prefix}objects/HH/HASH`; a fetch
//! lands a file that is already sealed, checked against the same sums.
//! Leases (snapshots/lease.rs) are small raw objects under `{prefix}leases/`.
//!
//! What this module must never do: log a URL (presigned URLs carry the
//! access key id and signature) or a secret.

pub mod fetch;
pub mod http;
pub mod hyper_io;
pub mod parallel;
pub mod resolve;
pub mod tls;
pub mod upload;

use crate::key::hash_hex;
use crate::limits::{REMOTE_CONNECT_TIMEOUT, REMOTE_RESPONSE_TIMEOUT, REMOTE_SIGN_TTL};
use crate::secret::Secret;
use crate::stats::ShardStats;
use ::http::Method;
use bytes::Bytes;
use hyper::body::Incoming;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Where the remote tier is and how to reach it.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Endpoint URL, e.g. `http://127.0.0.1:8333`. Path-style addressing.
    pub endpoint: Url,
    pub bucket: String,
    /// Region used in signatures; default `us-east-1`.
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Key prefix inside the bucket; default `trove/`.
    pub prefix: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Extra trusted CA certificates (PEM) for https:// endpoints.
    pub ca_file: Option<std::path::PathBuf>,
}

impl RemoteConfig {
    pub fn new(endpoint: Url, bucket: String) -> Self {
        Self {
            endpoint,
            bucket,
            region: "us-east-1".into(),
            access_key_id: Secret::default(),
            secret_access_key: Secret::default(),
            prefix: "trove/".into(),
            connect_timeout: REMOTE_CONNECT_TIMEOUT,
            response_timeout: REMOTE_RESPONSE_TIMEOUT,
            ca_file: None,
        }
    }
}

/// A remote-tier failure. Clone, because one failed fetch answers every
/// request that was waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("bad remote tier configuration: {0}")]
    Config(String),
    #[error("cannot connect to S3 at {endpoint}: {reason}; check --s3-endpoint and that the store is up")]
    Connect { endpoint: String, reason: String },
    #[error("S3 did not answer {op} within {after:?}")]
    Timeout { op: &'static str, after: Duration },
    #[error("S3 {op} failed: {reason}")]
    Http { op: &'static str, reason: String },
    #[error("S3 {op} answered {status} {code}")]
    Status { op: &'static str, status: u16, code: String },
    #[error("S3 {op} answered something unexpected: {what}")]
    Protocol { op: &'static str, what: String },
    #[error("the copy in S3 is corrupt: {0}")]
    Corrupt(String),
    #[error("local I/O while moving an object to or from S3: {0}")]
    LocalIo(String),
}

/// One shard's handle on the remote tier.
pub struct RemoteTier {
    bucket: Bucket,
    credentials: Option<Credentials>,
    prefix: String,
    timeouts: http::ClientOptions,
    stats: Arc<ShardStats>,
}

impl RemoteTier {
    pub fn new(cfg: &RemoteConfig, stats: Arc<ShardStats>) -> Result<Self, RemoteError> {
        let tls = match cfg.endpoint.scheme() {
            "http" => None,
            "https" => Some(tls::client_config(cfg.ca_file.as_deref())?),
            other => return Err(RemoteError::Config(format!("endpoint scheme {other:?}: use http:// or https://"))),
        };
        let bucket = Bucket::new(cfg.endpoint.clone(), UrlStyle::Path, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| RemoteError::Config(format!("endpoint or bucket: {e}")))?;
        let credentials = (!cfg.access_key_id.is_empty())
            .then(|| Credentials::new(cfg.access_key_id.expose(), cfg.secret_access_key.expose()));
        Ok(Self {
            bucket,
            credentials,
            prefix: cfg.prefix.clone(),
            timeouts: http::ClientOptions {
                connect: cfg.connect_timeout,
                response: cfg.response_timeout,
                tls,
                resolver: Default::default(),
                ca_hint: "for a private CA pass --s3-ca-file",
            },
            stats,
        })
    }

    pub fn object_name(&self, hash: u128) -> String {
        let hex = hash_hex(hash);
        format!("{}objects/{}/{}", self.prefix, &hex[..2], hex)
    }

    /// `{prefix}leases/HASH`: the small raw objects by which nodes claim
    /// work for the fleet (snapshots/lease.rs). Never a sealed object.
    pub fn lease_name(&self, hash: u128) -> String {
        format!("{}leases/{}", self.prefix, hash_hex(hash))
    }

    /// Whether S3 has the object `hash` (uploaded whole: a multipart upload
    /// shows only once complete).
    pub async fn exists(&self, hash: u128) -> Result<bool, RemoteError> {
        match self.get_range(hash, "bytes=0-0").await? {
            Some(resp) => {
                drop(resp);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Creates the raw object `name` only if there is none (`If-None-Match:
    /// *`): true when this request made it, false when one was there.
    pub async fn create_raw(&self, name: &str, body: Bytes) -> Result<bool, RemoteError> {
        const OP: &str = "conditional PUT";
        let url = self.bucket.put_object(self.credentials.as_ref(), name).sign(REMOTE_SIGN_TTL);
        self.stats.remote_put_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.send(OP, Method::PUT, &url, &[("if-none-match", "*".to_owned())], body).await?;
        match resp.status().as_u16() {
            // 409: a conditional write raced another one in flight (AWS).
            412 | 409 => Ok(false),
            _ => self.expect_ok(OP, resp).await.map(|_| true),
        }
    }

    /// Overwrites the raw object `name`.
    pub async fn put_raw(&self, name: &str, body: Bytes) -> Result<(), RemoteError> {
        const OP: &str = "PUT";
        let url = self.bucket.put_object(self.credentials.as_ref(), name).sign(REMOTE_SIGN_TTL);
        self.stats.remote_put_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.send(OP, Method::PUT, &url, &[], body).await?;
        self.expect_ok(OP, resp).await.map(|_| ())
    }

    /// The raw object `name`, if there is one; refused past `max` bytes.
    pub async fn get_raw(&self, name: &str, max: usize) -> Result<Option<Bytes>, RemoteError> {
        const OP: &str = "GET";
        let url = self.bucket.get_object(self.credentials.as_ref(), name).sign(REMOTE_SIGN_TTL);
        self.stats.remote_get_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.send(OP, Method::GET, &url, &[], Bytes::new()).await?;
        match resp.status().as_u16() {
            200 => http::read_small(OP, resp.into_body(), max, self.timeouts.response)
                .await
                .map(Some)
                .map_err(|e| self.fail(e)),
            404 => Ok(None),
            _ => Err(self.fail(http::status_error(OP, resp, self.timeouts.response).await)),
        }
    }

    /// Deletes the raw object `name` (gone already is fine).
    pub async fn delete_raw(&self, name: &str) -> Result<(), RemoteError> {
        const OP: &str = "DELETE";
        let url = self.bucket.delete_object(self.credentials.as_ref(), name).sign(REMOTE_SIGN_TTL);
        let resp = self.send(OP, Method::DELETE, &url, &[], Bytes::new()).await?;
        if resp.status().as_u16() == 404 {
            return Ok(());
        }
        self.expect_ok(OP, resp).await.map(|_| ())
    }

    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    pub fn response_timeout(&self) -> Duration {
        self.timeouts.response
    }

    /// GET with a `Range` header value; `Ok(None)` when S3 has no object.
    pub async fn get_range(&self, hash: u128, range: &str) -> Result<Option<::http::Response<Incoming>>, RemoteError> {
        const OP: &str = "GET";
        let name = self.object_name(hash);
        let url = self.bucket.get_object(self.credentials.as_ref(), &name).sign(REMOTE_SIGN_TTL);
        self.stats.remote_get_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.send(OP, Method::GET, &url, &[("range", range.to_owned())], Bytes::new()).await?;
        match resp.status().as_u16() {
            200 | 206 => Ok(Some(resp)),
            404 => Ok(None),
            _ => Err(self.fail(http::status_error(OP, resp, self.timeouts.response).await)),
        }
    }

    /// Stores `body` as the object `hash` in one PUT.
    pub async fn put(&self, hash: u128, body: Bytes) -> Result<(), RemoteError> {
        const OP: &str = "PUT";
        let name = self.object_name(hash);
        let url = self.bucket.put_object(self.credentials.as_ref(), &name).sign(REMOTE_SIGN_TTL);
        let len = body.len() as u64;
        self.stats.remote_put_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.send(OP, Method::PUT, &url, &[], body).await?;
        self.expect_ok(OP, resp).await?;
        self.stats.remote_bytes_written.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    pub async fn delete(&self, hash: u128) -> Result<(), RemoteError> {
        self.delete_raw(&self.object_name(hash)).await
    }

    async fn send(
        &self,
        op: &'static str,
        method: Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<::http::Response<Incoming>, RemoteError> {
        http::send(op, method, url, headers, body, &self.timeouts).await.map_err(|e| self.fail(e))
    }

    /// Reads a 2xx reply's body, or turns another status into an error.
    async fn expect_ok(&self, op: &'static str, resp: ::http::Response<Incoming>) -> Result<Bytes, RemoteError> {
        if resp.status().is_success() {
            http::read_small(op, resp.into_body(), crate::limits::REMOTE_SMALL_BODY_MAX_BYTES, self.timeouts.response)
                .await
                .map_err(|e| self.fail(e))
        } else {
            Err(self.fail(http::status_error(op, resp, self.timeouts.response).await))
        }
    }

    fn fail(&self, e: RemoteError) -> RemoteError {
        self.stats.remote_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "remote tier request failed");
        e
    }
}
