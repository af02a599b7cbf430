//! `trove serve` configuration: flags, then `TROVE_*` environment
//! variables (clap reads both), then the TOML file, then defaults. Every
//! key of the TOML file is the flag's name with `_` for `-`.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use trove_engine::units::{parse_duration, parse_size};
use trove_engine::{NodeConfig, RemoteConfig, Secret};
use trove_server::ServerConfig;

/// Every setting of `trove serve`, once: clap reads it from flags and
/// `TROVE_*`, serde from the TOML file (keys are the flag names with `_`),
/// and [`resolve`] lays the first over the second.
#[derive(Debug, Args, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flag names, `_` for `-`).
    #[arg(long, env = "TROVE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on, every shard (SO_REUSEPORT). [default: 127.0.0.1:8080]
    #[arg(long, env = "TROVE_LISTEN")]
    pub listen: Option<String>,
    /// Directory of the local tier. [default: ./trove-data]
    #[arg(long, env = "TROVE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Shards (pinned executors, one per core). [default: every core]
    #[arg(long, env = "TROVE_SHARDS")]
    pub shards: Option<usize>,
    /// CPU that shard 0 is pinned to; shard i gets the next ones. [default: 0]
    #[arg(long, env = "TROVE_FIRST_CPU")]
    pub first_cpu: Option<usize>,
    /// Most bytes the local tier keeps, e.g. 500G; least recently read go first. [default: 64GiB]
    #[arg(long, env = "TROVE_LOCAL_CAPACITY")]
    pub local_capacity: Option<String>,
    /// Memory for whole small objects (<= 64 KiB on disk), split over shards; 0 turns it off. [default: 256M]
    #[arg(long, env = "TROVE_MEMORY_CACHE")]
    pub memory_cache: Option<String>,
    /// Memory per shard registered with io_uring for disk I/O in flight (a large read keeps 16M). [default: 64M]
    #[arg(long, env = "TROVE_IO_MEMORY")]
    pub io_memory: Option<String>,
    /// Largest object a PUT may store; larger get 413. [default: 64GiB]
    #[arg(long, env = "TROVE_MAX_OBJECT_SIZE")]
    pub max_object_size: Option<String>,
    /// A request head must arrive whole within this (from the connect, or the first byte of the next request), and a request body must bring at least 1 KiB/s over each such window; slower clients are disconnected. [default: 10s]
    #[arg(long, env = "TROVE_HEAD_TIMEOUT")]
    pub head_timeout: Option<String>,
    /// Most client connections node-wide; when full, the one idle longest makes room for a new one. [default: half of the open-file limit less 2048, as a request may hold a socket and a file]
    #[arg(long, env = "TROVE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Request bodies (git upload-pack requests, read whole) all connections together may hold in memory, e.g. 512M; past it, 503 with Retry-After. [default: 1G]
    #[arg(long, env = "TROVE_BODY_MEMORY")]
    pub body_memory: Option<String>,
    /// Blob bytes all `POST .../blobs` responses (what mounts hydrate from) may hold in memory for clients that read slowly, e.g. 1G; past it, new requests get 503 with Retry-After. [default: 256M]
    #[arg(long, env = "TROVE_BLOB_MEMORY")]
    pub blob_memory: Option<String>,
    /// Memory for blobs recently sent to mounts (`POST .../blobs`), node-wide, so a tree many mounts read is inflated from its pack and hashed once; least recently served go first; 0 turns it off. [default: 256M]
    #[arg(long, env = "TROVE_BLOB_CACHE")]
    pub blob_cache: Option<String>,
    /// Close connections idle this long, e.g. 30s. [default: 60s]
    #[arg(long, env = "TROVE_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// S3-compatible endpoint (http:// or https://host:port) of the shared remote tier.
    #[arg(long, env = "TROVE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Bucket of the remote tier (must exist).
    #[arg(long, env = "TROVE_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Region used to sign S3 requests. [default: us-east-1]
    #[arg(long, env = "TROVE_S3_REGION")]
    pub s3_region: Option<String>,
    /// Key prefix inside the bucket. [default: trove/]
    #[arg(long, env = "TROVE_S3_PREFIX")]
    pub s3_prefix: Option<String>,
    /// Extra trusted CA certificates (PEM) for an https:// S3 endpoint with a private CA.
    #[arg(long, env = "TROVE_S3_CA_FILE")]
    pub s3_ca_file: Option<PathBuf>,
    /// Time S3 has to answer a request before the client gets 504. [default: 10s]
    #[arg(long, env = "TROVE_S3_TIMEOUT")]
    pub s3_timeout: Option<String>,
    /// Serve git host HOST from BASE_URL (http, https, git:// or file://), e.g. --upstream git.example.com=https://git.example.com. Repeatable. github.com, gitlab.com, bitbucket.org and codeberg.org are served from https:// by default.
    #[arg(long = "upstream", value_name = "HOST=BASE_URL", env = "TROVE_UPSTREAM", value_delimiter = ',')]
    #[serde(rename = "upstream", skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
    /// How often recently used mirrors fetch from their upstream in the background. [default: 60s]
    #[arg(long, env = "TROVE_FETCH_INTERVAL")]
    pub fetch_interval: Option<String>,
    /// How long a check of a mirror's refs against its upstream stays good. [default: 10s]
    #[arg(long, env = "TROVE_REFS_TTL")]
    pub refs_ttl: Option<String>,
    /// Rebuild a repo's snapshot.tar.zst when its HEAD moved and the snapshot is older than this (never when HEAD did not move). [default: 1h]
    #[arg(long, env = "TROVE_SNAPSHOT_INTERVAL")]
    pub snapshot_interval: Option<String>,
    /// With S3 shared by a fleet, a node claims each snapshot build with a lease in S3; the others wait for its result. A lease not renewed for this long (its node died) lets another node build. [default: 2m]
    #[arg(long, env = "TROVE_SNAPSHOT_LEASE")]
    pub snapshot_lease: Option<String>,
    /// Disk the bare git mirrors may use, node-wide; past it the least recently used mirrors are evicted and cloned again on their next request. Objects and snapshots have --local-capacity. [default: 64GiB]
    #[arg(long, env = "TROVE_MIRROR_CAPACITY")]
    pub mirror_capacity: Option<String>,
    /// Repack a mirror whose fetches brought new objects at most this often, so it serves as fast as a fresh clone (geometric repack, multi-pack-index and bitmap rewritten). [default: 10m]
    #[arg(long, env = "TROVE_UPKEEP_INTERVAL")]
    pub upkeep_interval: Option<String>,
    /// Longest a clone, fetch or ls-remote against an upstream may go without progress (connecting included) before it is killed and its requests get 504, e.g. 10s. [default: 30s]
    #[arg(long, env = "TROVE_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: Option<String>,
    /// Most clones and fetches against upstreams at once on the node; past it and --upstream-job-queue, requests get 503 with Retry-After. [default: 4 x shards]
    #[arg(long, env = "TROVE_MAX_UPSTREAM_JOBS")]
    pub max_upstream_jobs: Option<usize>,
    /// Clones and fetches that may wait for an upstream job slot. [default: 64]
    #[arg(long, env = "TROVE_UPSTREAM_JOB_QUEUE")]
    pub upstream_job_queue: Option<usize>,
    /// Most git upload-pack processes at once on the node. [default: 2 x shards]
    #[arg(long, env = "TROVE_MAX_UPLOAD_PACKS")]
    pub max_upload_packs: Option<usize>,
    /// Requests that may wait for an upload-pack slot; past that they get 503 with Retry-After. [default: 64]
    #[arg(long, env = "TROVE_UPLOAD_PACK_QUEUE")]
    pub upload_pack_queue: Option<usize>,
    /// Spin this long before an idle shard parks (faster cross-core wakes, more CPU). [default: 0ms]
    #[arg(long, env = "TROVE_SPIN_BEFORE_PARK")]
    pub spin_before_park: Option<String>,
    /// File of bearer tokens (one a line, # comments) that may write objects from any address: clients send `Authorization: Bearer TOKEN`. Repeatable. Without it, and without --api-allow, object PUT and DELETE are taken from loopback only.
    #[arg(long = "api-token-file", value_name = "FILE", env = "TROVE_API_TOKEN_FILE", value_delimiter = ',')]
    #[serde(rename = "api_token_file", skip_serializing_if = "Vec::is_empty")]
    pub api_token_files: Vec<PathBuf>,
    /// Networks whose clients may write objects without a token, e.g. 10.0.0.0/8 or 192.168.1.7/32. Repeatable. Loopback always may.
    #[arg(long = "api-allow", value_name = "CIDR", env = "TROVE_API_ALLOW", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_allow: Vec<String>,
    /// Put reads of /api/* (GET, HEAD, stats) under the same rule as writes. [default: reads are open]
    #[arg(long, env = "TROVE_API_READ_AUTH")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub api_read_auth: bool,
    /// S3 credentials from the TOML file only (flags would show them in
    /// `ps`); `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` win over them.
    #[arg(skip)]
    #[serde(skip_serializing)]
    pub s3_access_key_id: Option<Secret>,
    #[arg(skip)]
    #[serde(skip_serializing)]
    pub s3_secret_access_key: Option<Secret>,
}

pub fn resolve(args: ServeArgs) -> Result<(NodeConfig, ServerConfig)> {
    let m = match args.config.clone() {
        Some(p) => {
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading config file {}", p.display()))?;
            overlay(args, &text).with_context(|| format!("parsing config file {}", p.display()))?
        }
        None => args,
    };
    let mut node = NodeConfig::default();
    let mut server = ServerConfig::default();
    if let Some(l) = m.listen {
        server.listen = resolve_listen(&l)?;
    }
    if let Some(d) = m.data_dir {
        node.data_dir = d;
    }
    if let Some(n) = m.shards {
        if n == 0 || n > 1024 {
            bail!("--shards must be between 1 and 1024, got {n}");
        }
        node.shards = n;
    }
    node.first_cpu = m.first_cpu.unwrap_or(0);
    if let Some(s) = m.local_capacity {
        node.local_capacity_bytes = parse_size(&s).map_err(anyhow::Error::msg).context("--local-capacity")?;
    }
    if let Some(s) = m.memory_cache {
        node.memory_cache_bytes = parse_size(&s).map_err(anyhow::Error::msg).context("--memory-cache")?;
    }
    if let Some(s) = m.io_memory {
        node.io_memory_bytes = parse_size(&s).map_err(anyhow::Error::msg).context("--io-memory")?;
        if !(64 << 10..=16 << 30).contains(&node.io_memory_bytes) {
            bail!("--io-memory must be between 64K and 16G, got {s}");
        }
    }
    if let Some(s) = m.max_object_size {
        node.max_object_bytes = parse_size(&s).map_err(anyhow::Error::msg).context("--max-object-size")?;
    }
    if let Some(s) = m.idle_timeout {
        server.idle_timeout = parse_duration(&s).map_err(anyhow::Error::msg).context("--idle-timeout")?;
        if server.idle_timeout.is_zero() {
            bail!("--idle-timeout must be more than zero");
        }
    }
    if let Some(s) = m.head_timeout {
        server.head_timeout = parse_duration(&s).map_err(anyhow::Error::msg).context("--head-timeout")?;
        if server.head_timeout < std::time::Duration::from_secs(1) {
            bail!("--head-timeout must be at least 1s");
        }
    }
    if let Some(s) = m.body_memory {
        let bytes = parse_size(&s).map_err(anyhow::Error::msg).context("--body-memory")?;
        if bytes < 1 << 20 {
            bail!("--body-memory must be at least 1M");
        }
        server.body_budget = trove_server::budget::BodyBudget::new(bytes);
    }
    if let Some(s) = m.blob_memory {
        let bytes = parse_size(&s).map_err(anyhow::Error::msg).context("--blob-memory")?;
        let least = 2 * trove_engine::limits::BLOB_SERVE_MAX_BYTES;
        if bytes < least {
            bail!("--blob-memory must be at least {}M (two of the largest blobs read whole)", least >> 20);
        }
        server.blob_memory = trove_engine::tree::blob_memory::BlobMemory::new(bytes);
    }
    if let Some(s) = m.blob_cache {
        let bytes = parse_size(&s).map_err(anyhow::Error::msg).context("--blob-cache")?;
        server.blob_cache = trove_engine::tree::blob_cache::BlobCache::new(bytes);
    }
    if let Some(n) = m.max_connections {
        if n == 0 {
            bail!("--max-connections must be at least 1");
        }
        server.max_connections = Some(n);
    }
    if let Some(s) = m.spin_before_park {
        node.spin_before_park = parse_duration(&s).map_err(anyhow::Error::msg).context("--spin-before-park")?;
    }
    node.repo = trove_engine::repo::RepoConfig::new(node.shards);
    for u in m.upstreams {
        let (host, base) = u.split_once('=').with_context(|| {
            format!("--upstream {u:?} must be HOST=BASE_URL, e.g. git.example.com=https://git.example.com")
        })?;
        node.repo.upstreams.set(host, base)?;
    }
    if let Some(s) = m.fetch_interval {
        node.repo.fetch_interval = parse_duration(&s).map_err(anyhow::Error::msg).context("--fetch-interval")?;
        if node.repo.fetch_interval.is_zero() {
            bail!("--fetch-interval must be more than zero");
        }
    }
    if let Some(s) = m.refs_ttl {
        node.repo.refs_ttl = parse_duration(&s).map_err(anyhow::Error::msg).context("--refs-ttl")?;
    }
    if let Some(s) = m.snapshot_interval {
        node.repo.snapshot_interval = parse_duration(&s).map_err(anyhow::Error::msg).context("--snapshot-interval")?;
    }
    if let Some(s) = m.mirror_capacity {
        node.repo.mirror_capacity = parse_size(&s).map_err(anyhow::Error::msg).context("--mirror-capacity")?;
    }
    if let Some(s) = m.snapshot_lease {
        node.repo.snapshot_lease = parse_duration(&s).map_err(anyhow::Error::msg).context("--snapshot-lease")?;
        if node.repo.snapshot_lease < std::time::Duration::from_secs(1) {
            bail!("--snapshot-lease must be at least 1s");
        }
    }
    if let Some(s) = m.upkeep_interval {
        node.repo.upkeep_interval = parse_duration(&s).map_err(anyhow::Error::msg).context("--upkeep-interval")?;
    }
    if let Some(s) = m.upstream_timeout {
        node.repo.upstream_timeout = parse_duration(&s).map_err(anyhow::Error::msg).context("--upstream-timeout")?;
        if node.repo.upstream_timeout < std::time::Duration::from_secs(1) {
            bail!("--upstream-timeout must be at least 1s (git's low-speed limit counts whole seconds)");
        }
    }
    if let Some(n) = m.max_upstream_jobs {
        if n == 0 {
            bail!("--max-upstream-jobs must be at least 1");
        }
        node.repo.max_upstream_jobs = n;
    }
    if let Some(n) = m.upstream_job_queue {
        node.repo.upstream_job_queue = n;
    }
    if let Some(n) = m.max_upload_packs {
        if n == 0 {
            bail!("--max-upload-packs must be at least 1");
        }
        node.repo.max_upload_packs = n;
    }
    if let Some(n) = m.upload_pack_queue {
        node.repo.upload_pack_queue = n;
    }
    let mut tokens = Vec::new();
    for path in m.api_token_files {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("--api-token-file {}: cannot read it", path.display()))?;
        let read = trove_server::auth::read_token_file(&text)
            .map_err(|e| anyhow::anyhow!("--api-token-file {}: {e}", path.display()))?;
        tokens.extend(read);
    }
    let mut allow = Vec::new();
    for cidr in m.api_allow {
        let net: ipnet::IpNet = match cidr.parse() {
            Ok(n) => n,
            // A bare address admits that one host.
            Err(_) => cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from).map_err(|_| {
                anyhow::anyhow!("--api-allow {cidr:?} is not a network like 10.0.0.0/8 or an address like 10.1.2.3")
            })?,
        };
        allow.push(net);
    }
    server.api = trove_server::auth::ApiPolicy::new(&tokens, allow, m.api_read_auth);
    let endpoint = m.s3_endpoint;
    let bucket = m.s3_bucket;
    node.remote = match (endpoint, bucket) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => bail!("the remote tier needs both --s3-endpoint and --s3-bucket"),
        (Some(e), Some(b)) => {
            let url = url::Url::parse(&e)
                .with_context(|| format!("--s3-endpoint {e:?} is not a URL like http://127.0.0.1:8333"))?;
            let mut rc = RemoteConfig::new(url, b);
            if let Some(r) = m.s3_region {
                rc.region = r;
            }
            if let Some(p) = m.s3_prefix {
                rc.prefix = p;
            }
            rc.ca_file = m.s3_ca_file;
            if let Some(t) = m.s3_timeout {
                rc.response_timeout = parse_duration(&t).map_err(anyhow::Error::msg).context("--s3-timeout")?;
            }
            // Credentials: the standard AWS variables win over the file.
            let env = |name| std::env::var(name).ok().map(Secret::new);
            rc.access_key_id = env("AWS_ACCESS_KEY_ID").or(m.s3_access_key_id).unwrap_or_default();
            rc.secret_access_key = env("AWS_SECRET_ACCESS_KEY").or(m.s3_secret_access_key).unwrap_or_default();
            Some(rc)
        }
    };
    Ok((node, server))
}

/// `args` (flags and environment) laid over the TOML file `text`: a
/// setting given on both sides is the flag's.
fn overlay(args: ServeArgs, text: &str) -> Result<ServeArgs> {
    // Parsed once as the settings themselves, for the errors (unknown
    // keys, wrong types) to name the file's mistake.
    let file: ServeArgs = toml::from_str(text)?;
    let mut merged = toml::Table::try_from(&file).context("re-reading the config file")?;
    let given = toml::Table::try_from(&args).context("reading the flags")?;
    merged.extend(given);
    let mut m: ServeArgs = merged.try_into().context("merging flags over the config file")?;
    (m.config, m.s3_access_key_id, m.s3_secret_access_key) =
        (args.config, file.s3_access_key_id, file.s3_secret_access_key);
    Ok(m)
}

/// Parses the listen address; port 0 picks a free port once, so that
/// every shard binds the same one.
fn resolve_listen(l: &str) -> Result<std::net::SocketAddr> {
    let mut addr: std::net::SocketAddr =
        l.parse().with_context(|| format!("--listen {l:?} is not an address like 127.0.0.1:8080"))?;
    if addr.port() == 0 {
        let probe = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        addr.set_port(probe.local_addr()?.port());
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_is_printed_with_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trove.toml");
        let toml = "s3_endpoint = \"http://127.0.0.1:1\"\ns3_bucket = \"b\"\n\
                    s3_access_key_id = \"AKIDSECRETID\"\ns3_secret_access_key = \"wJalrXUtnFEMIK7MDENGbPxRfiCY\"\n";
        std::fs::write(&path, toml).expect("write config");
        let file: ServeArgs = toml::from_str(toml).expect("parse");
        let printed_file = format!("{file:?}");
        let (node, server) = resolve(ServeArgs { config: Some(path), ..Default::default() }).expect("resolve");
        let remote = node.remote.as_ref().expect("a remote tier");
        // AWS_* in the environment win over the file; either way a key is set.
        assert!(!remote.secret_access_key.is_empty());
        let printed = format!("{node:?} {server:?} {printed_file}");
        for secret in ["AKIDSECRETID", "wJalrXUtnFEMIK7MDENGbPxRfiCY", remote.secret_access_key.expose()] {
            assert!(!printed.contains(secret), "a secret was printed: {printed}");
        }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_fills_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trove.toml");
        let toml = "listen = \"127.0.0.1:9999\"\nrefs_ttl = \"5s\"\nupstream = [\"a.test=https://a.test\"]\n\
                    api_allow = [\"10.0.0.0/8\"]\nmax_upload_packs = 3\n";
        std::fs::write(&path, toml).expect("write config");
        let args = ServeArgs {
            config: Some(path.clone()),
            refs_ttl: Some("7s".into()),
            upstreams: vec!["b.test=https://b.test".into()],
            ..Default::default()
        };
        let (node, server) = resolve(args).expect("resolve");
        assert_eq!(server.listen.port(), 9999, "from the file");
        assert_eq!(node.repo.refs_ttl, std::time::Duration::from_secs(7), "the flag wins");
        assert_eq!(node.repo.max_upload_packs, 3, "from the file");
        let b = trove_engine::repo::RepoKey::parse("b.test", "o/r").expect("key");
        let a = trove_engine::repo::RepoKey::parse("a.test", "o/r").expect("key");
        assert!(node.repo.upstreams.url(&b).is_ok(), "the flag's upstream list");
        assert!(node.repo.upstreams.url(&a).is_err(), "replaces the file's");
        // A key the flags do not have is the file's mistake, named.
        std::fs::write(&path, "refs_tll = \"5s\"\n").expect("write config");
        let err = resolve(ServeArgs { config: Some(path), ..Default::default() }).expect_err("a typo");
        assert!(format!("{err:#}").contains("refs_tll"), "{err:#}");
    }
}
