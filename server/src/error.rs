//! The error both protocols answer with: a kind (HTTP status / gRPC code) and a message that
//! names the field at fault.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400 / INVALID_ARGUMENT.
    BadRequest,
    /// 404 / NOT_FOUND.
    NotFound,
    /// 503 / UNAVAILABLE: known model, not ready.
    Unavailable,
    /// 413 / RESOURCE_EXHAUSTED.
    TooLarge,
    /// 500 / INTERNAL.
    Internal,
    /// 504 / DEADLINE_EXCEEDED: the request timeout passed (queue + compute).
    Timeout,
}

/// A request error with a message that names the field at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    /// A bad request: `field: reason`.
    pub fn bad(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError { kind: ErrorKind::BadRequest, message: format!("{field}: {reason}") }
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { kind: ErrorKind::NotFound, message: message.into() }
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError { kind: ErrorKind::Unavailable, message: message.into() }
    }
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError { kind: ErrorKind::Timeout, message: message.into() }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError { kind: ErrorKind::Internal, message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
