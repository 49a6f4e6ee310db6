//! An HTTP client for Prometheus's instant-query endpoint.

use std::time::Duration;

use reqwest::StatusCode;
use url::Url;

use super::response::{self, DecodeError, Vector};

/// Why one query brought back no samples.
///
/// Display texts never contain the Prometheus URL's credentials: the URL in them is the
/// redacted one, and transport errors are stripped of the URL reqwest would add.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No HTTP answer: connection refused, reset, DNS, TLS.
    #[error("cannot reach prometheus at {url}: {reason}")]
    Unreachable {
        /// The redacted base URL.
        url: String,
        /// The transport error's own text, without its URL.
        reason: String,
    },
    /// No complete answer within `prometheus.query_timeout`.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// Prometheus answered with an error status.
    #[error("prometheus answered {status}: {reason}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// Prometheus's `errorType` when the body was its error document.
        error_type: Option<String>,
        /// Prometheus's own reason when the body had one, else what was wrong with the body.
        reason: String,
    },
    /// Prometheus answered 2xx but the body was not usable.
    #[error("{0}")]
    Body(#[from] DecodeError),
}

impl QueryError {
    /// True when Prometheus itself could not be reached, as opposed to answering badly.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            QueryError::Unreachable { .. } | QueryError::Timeout(_)
        )
    }

    /// True for failures that an immediate second try may not meet: a timeout, an overloaded
    /// or failing server (5xx, 429), or a query that Prometheus aborted while running it
    /// (422 `execution`). A malformed answer or a refused query would fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            QueryError::Timeout(_) => true,
            QueryError::Status {
                status, error_type, ..
            } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || (*status == StatusCode::UNPROCESSABLE_ENTITY
                        && error_type.as_deref() == Some("execution"))
            }
            QueryError::Unreachable { .. } | QueryError::Body(_) => false,
        }
    }
}

/// A 2xx answer to a query, kept as bytes so that its samples can borrow from it.
#[derive(Debug)]
pub struct Answer {
    body: bytes::Bytes,
}

impl Answer {
    /// Decodes the body into the query's vector.
    pub fn vector(&self) -> Result<Vector<'_>, QueryError> {
        Ok(response::decode(&self.body)?)
    }
}

/// A Prometheus server, identified by its base URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    query_url: Url,
    basic_auth: Option<(String, String)>,
    redacted: String,
    timeout: Duration,
}

impl Client {
    /// Builds a client for the Prometheus at `base`, whose queries give up after `timeout`.
    ///
    /// Credentials in the URL's userinfo are sent as HTTP basic auth, and are kept out of
    /// the URL that reaches logs and error messages.
    pub fn new(base: &Url, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("gpu-monitoring-api/", env!("CARGO_PKG_VERSION")))
            .build()?;

        Ok(Client {
            http,
            query_url: query_url(base),
            basic_auth: basic_auth(base),
            redacted: redact(base),
            timeout,
        })
    }

    /// The base URL with any credentials removed, fit for logs and the health endpoint.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// Runs one instant query and returns the successful answer's body, still to be decoded
    /// with [`Answer::vector`], which borrows from it.
    pub async fn query(&self, promql: &str) -> Result<Answer, QueryError> {
        tokio::time::timeout(self.timeout, self.send(promql))
            .await
            .map_err(|_| QueryError::Timeout(self.timeout))?
    }

    /// Known shortcoming: the body is read whole, with no size limit; a misbehaving proxy in
    /// front of Prometheus could make the poller hold a very large body in memory.
    async fn send(&self, promql: &str) -> Result<Answer, QueryError> {
        let mut request = self
            .http
            .get(self.query_url.clone())
            .query(&[("query", promql)]);
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }

        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;

        if status.is_success() {
            return Ok(Answer { body });
        }

        let (error_type, reason) = match response::decode(&body) {
            Err(DecodeError::Api {
                error_type,
                message,
            }) => (Some(error_type.clone()), format!("{error_type}: {message}")),
            Err(error @ DecodeError::Malformed(_)) => (None, error.to_string()),
            _ => (None, "the body is not an error document".to_owned()),
        };
        Err(QueryError::Status {
            status,
            error_type,
            reason,
        })
    }

    fn unreachable(&self, error: reqwest::Error) -> QueryError {
        QueryError::Unreachable {
            url: self.redacted.clone(),
            reason: error_chain(&error.without_url()),
        }
    }
}

/// Joins an error's sources, since reqwest's top-level text ("error sending request") hides
/// the useful part ("connection refused") in its source chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn query_url(base: &Url) -> Url {
    let mut url = bare(base);
    url.path_segments_mut()
        .expect("a validated http(s) URL has a path")
        .pop_if_empty()
        .extend(["api", "v1", "query"]);
    url
}

fn basic_auth(base: &Url) -> Option<(String, String)> {
    if base.username().is_empty() && base.password().is_none() {
        return None;
    }
    Some((
        base.username().to_owned(),
        base.password().unwrap_or_default().to_owned(),
    ))
}

/// The URL with userinfo, query and fragment removed, as text.
pub fn redact(url: &Url) -> String {
    bare(url).to_string()
}

/// The URL with userinfo, query and fragment removed; a query string can carry tokens too.
fn bare(url: &Url) -> Url {
    let mut clean = url.clone();
    // Both fail only for URLs that cannot have userinfo, which then have none to remove.
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.set_query(None);
    clean.set_fragment(None);
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URL")
    }

    #[test]
    fn the_query_path_is_appended_to_a_base_path_prefix() {
        assert_eq!(
            query_url(&url("http://prom:9090")).as_str(),
            "http://prom:9090/api/v1/query"
        );
        assert_eq!(
            query_url(&url("https://gw.example/prometheus/")).as_str(),
            "https://gw.example/prometheus/api/v1/query"
        );
    }

    #[test]
    fn credentials_never_reach_the_redacted_url_or_the_query_url() {
        let base = url("http://admin:s3cret@prom:9090/?token=abc");

        assert_eq!(redact(&base), "http://prom:9090/");
        assert!(!query_url(&base).as_str().contains("s3cret"));
        assert_eq!(
            basic_auth(&base),
            Some(("admin".to_owned(), "s3cret".to_owned()))
        );
    }

    #[test]
    fn only_failures_a_second_try_may_not_meet_are_transient() {
        let status = |code: u16, error_type: Option<&str>| QueryError::Status {
            status: StatusCode::from_u16(code).expect("status"),
            error_type: error_type.map(str::to_owned),
            reason: String::new(),
        };

        assert!(QueryError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(status(503, Some("unavailable")).is_transient());
        assert!(status(500, None).is_transient());
        assert!(status(429, None).is_transient());
        assert!(status(422, Some("execution")).is_transient());
        assert!(!status(422, Some("bad_data")).is_transient());
        assert!(!status(400, Some("bad_data")).is_transient());
        assert!(!QueryError::Body(DecodeError::Malformed("x".into())).is_transient());
    }

    #[test]
    fn a_url_without_userinfo_sends_no_basic_auth() {
        assert_eq!(basic_auth(&url("http://prom:9090")), None);
    }
}
