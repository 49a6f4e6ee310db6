//! Query-string checking.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;

/// Extractor for endpoints that take no query parameters: any parameter is a 400 that names
/// it, because a silently ignored `?node=x` would look like a filter that worked.
#[derive(Debug)]
pub struct NoParams;

impl<S: Send + Sync> FromRequestParts<S> for NoParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        match url::form_urlencoded::parse(query.as_bytes()).next() {
            None => Ok(NoParams),
            Some((name, _)) => Err(ApiError::BadParameter(format!(
                "unknown query parameter {:?}: this endpoint takes none",
                super::error::abbreviate(&name)
            ))),
        }
    }
}
