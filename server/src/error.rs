//! API errors: one status, one stable code, one message that says what
//! happened and what to do. Engine errors are mapped here, once.

use crate::body::RespBody;
use http::{Response, StatusCode};
use trove_engine::repo::RepoError;
use trove_engine::{EngineError, RemoteError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a Retry-After header (503s).
    pub retry_after: Option<u64>,
    /// The challenge of a 401 (`WWW-Authenticate`): Basic makes git ask its
    /// credential helper; Bearer is the object API's.
    pub authenticate: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, authenticate: None }
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn into_response(self) -> Response<RespBody> {
        let body = serde_json::json!({ "error": self.message, "code": self.code }).to_string();
        let mut b = Response::builder();
        if let Some(s) = self.retry_after {
            b = b.header(http::header::RETRY_AFTER, s);
        }
        if let Some(challenge) = self.authenticate {
            b = b.header(http::header::WWW_AUTHENTICATE, challenge);
        }
        b.status(self.status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(RespBody::full(body))
            .expect("static response parts are valid")
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code) = match &e {
            EngineError::Key(_) => (StatusCode::BAD_REQUEST, "invalid_key"),
            EngineError::DiskFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
            EngineError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            EngineError::Remote(RemoteError::Timeout { .. }) => (StatusCode::GATEWAY_TIMEOUT, "remote_timeout"),
            EngineError::Remote(_) => (StatusCode::BAD_GATEWAY, "remote_error"),
            EngineError::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt"),
            EngineError::ShardGone { .. } => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            EngineError::Io { .. } | EngineError::DataDirInUse { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "io_error")
            }
        };
        Self::new(status, code, e.to_string())
    }
}

/// A repo operation's failure as the git routes answer it.
pub fn repo_error(e: RepoError) -> ApiError {
    let msg = e.to_string();
    match e {
        RepoError::BadName(_) => ApiError::bad_request("invalid_repo", msg),
        RepoError::HostNotAllowed(_) => ApiError::new(StatusCode::FORBIDDEN, "host_not_allowed", msg),
        RepoError::UpstreamNotFound(_)
        | RepoError::NoCommits(_)
        | RepoError::UnknownCommit(_)
        | RepoError::NotACommit { .. } => ApiError::not_found(msg),
        RepoError::Timeout(..) | RepoError::Stalled(..) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", msg)
        }
        RepoError::Redirected { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "upstream_redirect", msg),
        RepoError::Backoff { .. } | RepoError::Git { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_failed", msg)
        }
        RepoError::Unauthorized(_) => ApiError {
            authenticate: Some("Basic realm=\"trove\""),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
        },
        RepoError::ShardGone(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", msg),
        RepoError::Unsupported(_) => ApiError::new(StatusCode::NOT_IMPLEMENTED, "unsupported", msg),
        RepoError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", msg).retry_after(5),
        RepoError::BadUpstream(_) | RepoError::Spawn(..) | RepoError::Io(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
        }
    }
}
