//! The limit on the request line, as a plain tower layer.
//!
//! It runs in front of every route on every request, so it is written as a service whose
//! future is the inner one's, not as an async middleware function, which would box a future
//! and clone the inner service per request for a check that never waits.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use tower::{Layer, Service};

use super::ApiError;

/// Answers 414 `uri_too_long` to a request whose method and target together exceed `max`
/// bytes, before any route parses it.
#[derive(Debug, Clone, Copy)]
pub struct RequestLineLimit {
    max: usize,
}

impl RequestLineLimit {
    /// A limit of `max` bytes.
    pub fn new(max: usize) -> Self {
        RequestLineLimit { max }
    }
}

impl<S> Layer<S> for RequestLineLimit {
    type Service = LimitRequestLine<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitRequestLine {
            inner,
            max: self.max,
        }
    }
}

/// The service [`RequestLineLimit`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct LimitRequestLine<S> {
    inner: S,
    max: usize,
}

impl<S> Service<Request> for LimitRequestLine<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request_line_length(&request) > self.max {
            let refused = ApiError::UriTooLong(self.max).into_response();
            return Either::Left(ready(Ok(refused)));
        }
        Either::Right(self.inner.call(request))
    }
}

/// Method plus request target as the client sent it: origin form (`/path?query`), or
/// absolute form with scheme and authority.
fn request_line_length(request: &Request) -> usize {
    let uri = request.uri();
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    request.method().as_str().len() + scheme + authority + target
}
