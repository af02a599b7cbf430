//! Who may use the object API (`/api/*`).
//!
//! Writes (PUT, DELETE, anything but GET and HEAD) are let through from
//! loopback, from the CIDRs given with `--api-allow`, or with
//! `Authorization: Bearer <token>` naming one of the `--api-token-file`
//! tokens. Reads are open, unless `--api-read-auth` puts them under the same
//! rule. A request with no token gets 401 with `WWW-Authenticate: Bearer`;
//! a wrong token, or a peer no rule admits, gets 403. The git face is not
//! covered here: it is read-only, and private repos have their own check
//! (engine `mirrors/access.rs`).
//!
//! Tokens are kept only as SHA-256 digests and never logged. The peer address comes from the accepted socket (`Peer`,
//! put in the request's extensions by `conn.rs`), never from a header.

use crate::error::ApiError;
use http::{HeaderMap, StatusCode};
use ipnet::IpNet;
use std::net::IpAddr;
use trove_engine::Secret;

/// The address of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// The object API's access rule.
#[derive(Clone, Default)]
pub struct ApiPolicy {
    token_digests: Vec<[u8; 32]>,
    allow: Vec<IpNet>,
    read_auth: bool,
}

impl std::fmt::Debug for ApiPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiPolicy")
            .field("tokens", &self.token_digests.len())
            .field("allow", &self.allow)
            .field("read_auth", &self.read_auth)
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    d.as_ref().try_into().expect("SHA-256 digests have 32 bytes")
}

impl ApiPolicy {
    pub fn new(tokens: &[Secret], allow: Vec<IpNet>, read_auth: bool) -> Self {
        let token_digests = tokens.iter().map(|t| digest(t.expose().as_bytes())).collect();
        Self { token_digests, allow, read_auth }
    }

    /// Lets a request of `peer` with `headers` through, or says why not.
    pub fn check(&self, peer: Option<IpAddr>, headers: &HeaderMap, write: bool) -> Result<(), ApiError> {
        if !write && !self.read_auth {
            return Ok(());
        }
        // An IPv4 client of a [::] listener shows up as ::ffff:a.b.c.d.
        let peer = peer.map(|p| p.to_canonical());
        if peer.is_some_and(|p| p.is_loopback() || self.allow.iter().any(|n| n.contains(&p))) {
            return Ok(());
        }
        let what = if write { "writes" } else { "reads (--api-read-auth)" };
        let presented = headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        let Some(presented) = presented else {
            if self.token_digests.is_empty() {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("{what} are allowed from loopback only here; the operator can admit you with --api-allow CIDR or --api-token-file"),
                ));
            }
            return Err(ApiError {
                authenticate: Some("Bearer realm=\"trove\""),
                ..ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    format!("{what} from your address need Authorization: Bearer <token> (a token of the node's --api-token-file)"),
                )
            });
        };
        // The scheme is case-insensitive (RFC 9110 11.1): `bearer` is Bearer.
        let token = match presented.iter().position(|&b| b == b' ') {
            Some(i) if presented[..i].eq_ignore_ascii_case(b"bearer") => presented[i + 1..].trim_ascii_start(),
            _ => b"",
        };
        let d = digest(token);
        // Digests are compared, not tokens: how long a comparison takes says
        // something of a digest at most, which tells nothing of a token.
        if token.is_empty() || !self.token_digests.contains(&d) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_token",
                "the Authorization header is not a Bearer token this node accepts; check the token",
            ));
        }
        Ok(())
    }
}

/// Reads a token file: one token a line; blank lines and lines starting
/// with `#` are skipped. At least one token, each of visible ASCII.
pub fn read_token_file(text: &str) -> Result<Vec<Secret>, String> {
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("line {}: a token is visible ASCII with no spaces", i + 1));
        }
        tokens.push(Secret::new(t));
    }
    if tokens.is_empty() {
        return Err("it holds no token (one a line; # starts a comment)".into());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().expect("header"));
        }
        h
    }

    #[test]
    fn loopback_cidrs_and_tokens_admit_writes_nothing_else_does() {
        let p = ApiPolicy::new(
            &[Secret::new("t0k"), Secret::new("other")],
            vec!["10.9.0.0/16".parse().expect("cidr")],
            false,
        );
        let far: IpAddr = "192.0.2.7".parse().expect("ip");
        let status = |r: Result<(), ApiError>| r.err().map(|e| e.status.as_u16());
        assert_eq!(status(p.check(Some("127.0.0.1".parse().expect("ip")), &headers(None), true)), None);
        assert_eq!(status(p.check(Some("::ffff:127.0.0.1".parse().expect("ip")), &headers(None), true)), None);
        assert_eq!(status(p.check(Some("10.9.3.4".parse().expect("ip")), &headers(None), true)), None);
        assert_eq!(status(p.check(Some(far), &headers(None), false)), None, "reads are open");
        assert_eq!(status(p.check(Some(far), &headers(None), true)), Some(401));
        assert_eq!(status(p.check(Some(far), &headers(Some("Bearer other")), true)), None);
        assert_eq!(status(p.check(Some(far), &headers(Some("Bearer t0kx")), true)), Some(403));
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let h = headers(Some(&format!("{scheme} other")));
            assert_eq!(status(p.check(Some(far), &h, true)), None, "{scheme}: schemes are case-insensitive");
        }
        assert_eq!(status(p.check(Some(far), &headers(Some("Basic dDBrOg==")), true)), Some(403));
        assert_eq!(status(p.check(None, &headers(None), true)), Some(401), "an unknown peer is not loopback");
        let read_auth = ApiPolicy::new(&[], vec![], true);
        assert_eq!(status(read_auth.check(Some(far), &headers(None), false)), Some(403));
    }

    #[test]
    fn token_files_are_read_one_token_a_line() {
        let t = read_token_file("# ci\n\nabc\n  def  \n").expect("tokens");
        assert_eq!(t.iter().map(|s| s.expose()).collect::<Vec<_>>(), ["abc", "def"]);
        assert!(read_token_file("# none\n").is_err());
        assert!(read_token_file("a b\n").is_err());
        assert!(!format!("{:?}", ApiPolicy::new(&t, vec![], false)).contains("abc"));
    }
}
