//! Every way a request can fail, mapped to a status and an envelope in one place.

use std::any::Any;
use std::time::Duration;

use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::envelope::failure;

/// A request that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route has this path.
    #[error("no endpoint at {0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method {0} is not allowed here; use GET or HEAD")]
    MethodNotAllowed(Method),
    /// A query parameter the endpoint does not take, or a malformed one.
    #[error("{0}")]
    BadParameter(String),
    /// A path segment that is not UTF-8 once percent-decoded, so it can name nothing.
    #[error("the path {0:?} is not valid UTF-8 once percent-decoded")]
    BadPath(String),
    /// `/api/v1/gpu/nodes/{name}` for a node the snapshot does not have.
    #[error("no node named {0:?} in the latest snapshot")]
    UnknownNode(String),
    /// No poll has succeeded yet.
    #[error("no data yet: no poll of prometheus has succeeded since start-up")]
    NoData,
    /// `server.max_stream_subscribers` streams are already open.
    #[error(
        "{0} {streams} open, the most this service allows; retry later or poll instead",
        streams = if *.0 == 1 { "stream is" } else { "streams are" }
    )]
    TooManySubscribers(usize),
    /// The request ran past `server.request_timeout`.
    #[error("the request took longer than {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// `server.max_concurrent_requests` requests are already being answered.
    #[error("{0} requests are being answered, the most this service allows; retry shortly")]
    Overloaded(usize),
    /// The method and URI together are longer than the service reads.
    #[error("the method and URI are longer than {0} bytes")]
    UriTooLong(usize),
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) | ApiError::UnknownNode(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadParameter(_) | ApiError::BadPath(_) => StatusCode::BAD_REQUEST,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::NoData
            | ApiError::Timeout(_)
            | ApiError::TooManySubscribers(_)
            | ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable, machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) | ApiError::UnknownNode(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::BadParameter(_) | ApiError::BadPath(_) => "bad_request",
            ApiError::NoData => "no_data",
            ApiError::Timeout(_) => "timeout",
            ApiError::TooManySubscribers(_) => "too_many_subscribers",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::UriTooLong(_) => "uri_too_long",
        }
    }
}

/// Seconds an overloaded client is asked to wait: requests finish in milliseconds, so
/// capacity is back almost at once, and a short wait spreads the retries out.
const OVERLOADED_RETRY_AFTER: &str = "1";

/// Seconds a refused subscriber is asked to wait: streams last long, so a slot frees up
/// far less often than a request slot does.
const SUBSCRIBERS_RETRY_AFTER: &str = "30";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = failure(self.status(), self.code(), self.to_string());
        let extra = match self {
            ApiError::MethodNotAllowed(_) => Some((header::ALLOW, "GET, HEAD")),
            ApiError::Overloaded(_) => Some((header::RETRY_AFTER, OVERLOADED_RETRY_AFTER)),
            ApiError::TooManySubscribers(_) => Some((header::RETRY_AFTER, SUBSCRIBERS_RETRY_AFTER)),
            _ => None,
        };
        if let Some((name, value)) = extra {
            let value = header::HeaderValue::from_static(value);
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Fallback for paths no route matches.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(abbreviate(uri.path()))
}

/// Keeps what a client sent, when echoed in an error, to a readable length.
pub fn abbreviate(text: &str) -> String {
    const LIMIT: usize = 120;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Fallback for known paths asked with another method.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method)
}

/// Turns a handler panic into a 500 envelope; the panic text goes to the log, never to the
/// client.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!(
        panic = panic_text(panic.as_ref()),
        "request handler panicked"
    );

    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error".to_owned(),
    )
}

/// The message of a caught panic, for the log.
pub fn panic_text(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("non-text panic payload")
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_a_500_envelope_that_does_not_repeat_the_panic_text() {
        let response = panic_response(Box::new("index out of bounds: secret detail"));

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(response.into_body(), 4096).await.expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(r#""code":"internal""#), "{text}");
        assert!(!text.contains("secret detail"), "{text}");
    }
}
