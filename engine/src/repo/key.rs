//! Repo names: validation, the canonical key, and the upstream URL.
//!
//! A repo is named `{host}/{path}` in URLs (`/git/github.com/org/repo`).
//! The canonical key is what a mirror is stored and owned under:
//! - the host is lowercased;
//! - the path keeps its case, loses one trailing `/` and one trailing
//!   `.git`, so `org/repo`, `org/repo/` and `org/repo.git` are one mirror;
//! - segments are non-empty, made of ASCII letters, digits and `._-~`,
//!   never `.` or `..`, never starting with `-` (no option injection into
//!   git's argv), at most MAX_SEGMENTS of them.
//!
//! This module never touches the disk or the network.

use crate::repo::error::RepoError;

/// Longest canonical key, in bytes.
pub const REPO_KEY_MAX_BYTES: usize = 512;
/// Most path segments (GitLab nests groups).
const MAX_SEGMENTS: usize = 16;

/// The hosts served without configuration, as `https://{host}/{path}`.
pub const DEFAULT_ALLOWED_HOSTS: &[&str] = &["github.com", "gitlab.com", "bitbucket.org", "codeberg.org"];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoKey {
    host: String,
    path: String,
}

impl RepoKey {
    /// Parses `host` and `path` as they appear in a URL.
    pub fn parse(host: &str, path: &str) -> Result<Self, RepoError> {
        let bad = |why: &str| RepoError::BadName(format!("{host}/{path}: {why}"));
        let host = host.to_ascii_lowercase();
        if host.is_empty() || host.len() > 253 {
            return Err(bad("the host must be 1 to 253 characters"));
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
            || host.starts_with(['.', '-'])
        {
            return Err(bad("the host may hold only letters, digits, '.', '-' and a ':port'"));
        }
        let mut p = path.strip_suffix('/').unwrap_or(path);
        p = p.strip_suffix(".git").unwrap_or(p);
        if p.is_empty() {
            return Err(bad("the repo path is empty"));
        }
        let segments: Vec<&str> = p.split('/').collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(bad("the repo path has too many segments"));
        }
        for s in &segments {
            if s.is_empty() || *s == "." || *s == ".." {
                return Err(bad("the repo path has an empty, '.' or '..' segment"));
            }
            if s.starts_with('-') {
                return Err(bad("a path segment may not start with '-'"));
            }
            if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b)) {
                return Err(bad("the repo path may hold only letters, digits and '._-~'"));
            }
        }
        let key = Self { host, path: p.to_owned() };
        if key.canonical().len() > REPO_KEY_MAX_BYTES {
            return Err(bad("the repo name is too long"));
        }
        Ok(key)
    }

    /// Parses a canonical key (`host/path`), as stored in a mirror.
    pub fn parse_canonical(s: &str) -> Result<Self, RepoError> {
        let (host, path) = s.split_once('/').ok_or_else(|| RepoError::BadName(format!("{s}: no '/'")))?;
        Self::parse(host, path)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// `host/path`: what the mirror is stored and owned under.
    pub fn canonical(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }

    /// The hash the owner and the mirror's directory are derived from.
    pub fn hash(&self) -> u128 {
        crate::key::name_hash("\0git", &self.canonical())
    }

    pub fn owner(&self, nr_shards: usize) -> crate::key::ShardId {
        crate::key::owner(self.hash(), nr_shards)
    }
}

impl std::fmt::Display for RepoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

/// Which hosts are served and where their repos are fetched from.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// `host -> base URL`; a repo's upstream is `{base}/{path}`.
    map: Vec<(String, String)>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self { map: DEFAULT_ALLOWED_HOSTS.iter().map(|h| (h.to_string(), format!("https://{h}"))).collect() }
    }
}

impl Upstreams {
    /// Adds or replaces `host`'s base URL (`--upstream HOST=BASE_URL`).
    /// The base is http(s)://, git:// or file://, without credentials.
    pub fn set(&mut self, host: &str, base: &str) -> Result<(), RepoError> {
        let bad = |why: &str| RepoError::BadUpstream(format!("{host}={base}: {why}"));
        let host = host.to_ascii_lowercase();
        RepoKey::parse(&host, "x").map_err(|_| bad("not a host name"))?;
        let url = url::Url::parse(base).map_err(|e| bad(&format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https" | "git" | "file") {
            return Err(bad("the scheme must be http, https, git or file"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials do not belong in the URL; clients pass an Authorization header"));
        }
        let base = base.trim_end_matches('/').to_owned();
        self.map.retain(|(h, _)| *h != host);
        self.map.push((host, base));
        Ok(())
    }

    /// The upstream URL of `key`, or `Forbidden` for a host not served.
    pub fn url(&self, key: &RepoKey) -> Result<String, RepoError> {
        self.map
            .iter()
            .find(|(h, _)| *h == key.host)
            .map(|(_, base)| format!("{base}/{}", key.path))
            .ok_or_else(|| RepoError::HostNotAllowed(key.host.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_for_the_spellings_of_a_repo() {
        let a = RepoKey::parse("GitHub.com", "org/repo").expect("valid in this test");
        for p in ["org/repo.git", "org/repo/", "org/repo.git/"] {
            assert_eq!(RepoKey::parse("github.com", p).expect("valid in this test"), a, "{p}");
        }
        assert_eq!(a.canonical(), "github.com/org/repo");
        assert_ne!(RepoKey::parse("github.com", "org/Repo").expect("valid in this test"), a);
    }

    #[test]
    fn bad_names_are_refused() {
        for (h, p) in [
            ("github.com", ""),
            ("github.com", "../etc"),
            ("github.com", "org/../x"),
            ("github.com", "/abs"),
            ("github.com", "org//x"),
            ("github.com", "org/-upload-pack=x"),
            ("github.com", "org/re\npo"),
            ("github.com", "org/re po"),
            ("github.com", "org/a\\b"),
            ("", "org/repo"),
            ("git hub.com", "org/repo"),
            ("-x.com", "org/repo"),
        ] {
            assert!(RepoKey::parse(h, p).is_err(), "{h:?} {p:?}");
        }
        assert!(RepoKey::parse("github.com", &"a/".repeat(20)).is_err());
        assert!(RepoKey::parse("github.com", &"a".repeat(600)).is_err());
    }

    #[test]
    fn upstreams_map_hosts_and_refuse_the_rest() {
        let mut u = Upstreams::default();
        let k = RepoKey::parse("github.com", "org/repo.git").expect("valid in this test");
        assert_eq!(u.url(&k).expect("valid in this test"), "https://github.com/org/repo");
        let local = RepoKey::parse("example.test", "org/repo").expect("valid in this test");
        assert!(matches!(u.url(&local), Err(RepoError::HostNotAllowed(_))));
        u.set("example.test", "file:///srv/git/").expect("valid in this test");
        assert_eq!(u.url(&local).expect("valid in this test"), "file:///srv/git/org/repo");
        assert!(u.set("x.test", "https://user:pw@host/").is_err());
        assert!(u.set("x.test", "ssh://host/").is_err());
        assert!(u.set("x.test", "not a url").is_err());
    }
}
