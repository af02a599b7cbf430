//! The Git LFS routes the node passes through to an upstream, and nothing
//! else.
//!
//! A client's `{repo}.git/info/lfs/{rest}` reaches the upstream only when
//! `rest` is one of the LFS API's own routes, with the method the spec
//! gives it: the batch endpoint and the locking API. Anything else (`..`,
//! percent escapes, backslashes, empty segments, other paths or methods)
//! is refused here, before a byte leaves the node: appended to the
//! upstream's URL and normalized, such a path reached any path of the
//! upstream host with the client's Authorization. `passthrough.rs` then
//! checks the URL it built still lies under `{base}.git/info/lfs/`.
//!
//! What this module must never do: let through a path it has not matched
//! whole, or decode one (a decoded path is a different path).

use crate::error::ApiError;
use http::{Method, StatusCode};

/// Longest lock id accepted (git-lfs servers use UUIDs and small numbers).
const LOCK_ID_MAX_BYTES: usize = 128;

/// Checks `rest` (what follows `/info/lfs/`, raw, without the query) and
/// the method against the LFS API. `Ok` only for its routes.
pub fn check(method: &Method, rest: &str) -> Result<(), ApiError> {
    let allowed: &[Method] = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["objects", "batch"] => &[Method::POST],
        ["locks"] => &[Method::GET, Method::POST],
        ["locks", "verify"] => &[Method::POST],
        ["locks", id, "unlock"] if lock_id(id) => &[Method::POST],
        _ => {
            return Err(ApiError::not_found(format!(
                "info/lfs/{}: not a Git LFS API route; the node passes on objects/batch, locks, locks/verify and \
                 locks/{{id}}/unlock only",
                rest.escape_debug()
            )))
        }
    };
    if !allowed.contains(method) {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("info/lfs/{rest} takes {}", names.join(" or ")),
        ));
    }
    Ok(())
}

/// A lock id as servers make them: letters, digits, `-` and `_`.
fn lock_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= LOCK_ID_MAX_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_lfs_api_routes_pass_with_their_methods() {
        for (m, p) in [
            (Method::POST, "objects/batch"),
            (Method::GET, "locks"),
            (Method::POST, "locks"),
            (Method::POST, "locks/verify"),
            (Method::POST, "locks/3f2a-b_9/unlock"),
        ] {
            assert!(check(&m, p).is_ok(), "{m} {p}");
        }
        for (m, p, status) in [
            (Method::GET, "objects/batch", 405),
            (Method::DELETE, "locks", 405),
            (Method::PUT, "objects/batch", 405),
            (Method::POST, "objects/batch/../../../../admin", 404),
            (Method::POST, "%2e%2e/%2e%2e/admin", 404),
            (Method::POST, "objects%2fbatch", 404),
            (Method::POST, "objects\\batch", 404),
            (Method::POST, "objects//batch", 404),
            (Method::POST, "objects/batch/", 404),
            (Method::POST, "locks/../unlock", 404),
            (Method::POST, "locks/./unlock", 404),
            (Method::POST, "locks/%2e%2e/unlock", 404),
            (Method::POST, "locks//unlock", 404),
            (Method::GET, "objects/0123abcd", 404),
            (Method::POST, "", 404),
        ] {
            let e = check(&m, p).expect_err(p);
            assert_eq!(e.status.as_u16(), status, "{m} {p}");
        }
    }
}
