//! An HTTP client for Prometheus's instant-query endpoint.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;
use url::Url;

use super::auth::Auth;
use super::response::{self, DecodeError, Vector};

/// The default for `prometheus.max_response_bytes`: 64 MiB, far above the answer for a
/// cluster of thousands of GPUs, yet small enough that a broken proxy cannot exhaust memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

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
    /// The body was refused unread past `prometheus.max_response_bytes`.
    #[error(
        "the answer from {url} is larger than prometheus.max_response_bytes ({} bytes)",
        .limit
    )]
    TooLarge {
        /// The redacted base URL.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The connection broke while the body was arriving.
    #[error("the answer from {url} broke off after {received} bytes: {reason}")]
    CutOff {
        /// The redacted base URL.
        url: String,
        /// Body bytes that arrived before the break.
        received: usize,
        /// The transport error's own text, without its URL.
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
    /// (422 `execution`), or a body cut off mid-way, which is a restart or a proxy dropping
    /// the connection rather than anything the query asked for. A malformed or oversized
    /// answer or a refused query would fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            QueryError::Timeout(_) | QueryError::CutOff { .. } => true,
            QueryError::Status {
                status, error_type, ..
            } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || (*status == StatusCode::UNPROCESSABLE_ENTITY
                        && error_type.as_deref() == Some("execution"))
            }
            QueryError::Unreachable { .. } | QueryError::TooLarge { .. } | QueryError::Body(_) => {
                false
            }
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

/// What a client needs beyond the URL and the timeout.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bodies larger than this are refused without being read whole.
    pub max_response_bytes: u64,
    /// Credentials to send; when `None`, the URL's userinfo is sent as basic auth.
    pub auth: Option<Auth>,
    /// Extra trusted roots, for a Prometheus behind a private CA.
    pub ca_certificates: Vec<reqwest::Certificate>,
    /// Accept any server certificate. Only for tests and emergencies.
    pub insecure_skip_verify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            auth: None,
            ca_certificates: Vec::new(),
            insecure_skip_verify: false,
        }
    }
}

/// A Prometheus server, identified by its base URL.
///
/// Its `Debug` output shows no secret: credentials are held as [`Auth`], which redacts them.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    query_url: Url,
    auth: Option<Auth>,
    redacted: String,
    timeout: Duration,
    max_response_bytes: u64,
}

impl Client {
    /// Builds a client for the Prometheus at `base`, whose queries give up after `timeout`.
    ///
    /// Credentials in the URL's userinfo are sent as HTTP basic auth, and are kept out of
    /// the URL that reaches logs and error messages.
    pub fn new(base: &Url, timeout: Duration) -> Result<Self, reqwest::Error> {
        Client::with_options(base, timeout, Options::default())
    }

    /// Like [`Client::new`], with limits, credentials and TLS settings.
    pub fn with_options(
        base: &Url,
        timeout: Duration,
        options: Options,
    ) -> Result<Self, reqwest::Error> {
        Ok(Client {
            http: http_client(&options)?,
            query_url: query_url(base),
            auth: options.auth.or_else(|| userinfo_auth(base)),
            redacted: redact(base),
            timeout,
            max_response_bytes: options.max_response_bytes,
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

    async fn send(&self, promql: &str) -> Result<Answer, QueryError> {
        let request = self
            .http
            .get(self.query_url.clone())
            .query(&[("query", promql)]);
        let request = self.authorize(request).await;

        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = self.read_body(response).await?;

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

    /// Adds the credentials; reqwest marks both headers sensitive, which keeps them out of
    /// its own `Debug` output.
    async fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            None => request,
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            Some(Auth::Bearer(token)) => request.bearer_auth(token.fresh().await.expose_secret()),
        }
    }

    /// Reads the body chunk by chunk, so that an oversized one is refused after at most
    /// `max_response_bytes` rather than held whole; an honest Content-Length is refused
    /// before any of it is read.
    async fn read_body(&self, mut response: Response) -> Result<Bytes, QueryError> {
        let limit = self.max_response_bytes;
        let announced = response.content_length().unwrap_or(0);
        if announced > limit {
            return Err(self.too_large());
        }

        let capacity = usize::try_from(announced).unwrap_or(0);
        let mut body = BytesMut::with_capacity(capacity);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.cut_off(body.len(), e))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(self.too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn unreachable(&self, error: reqwest::Error) -> QueryError {
        QueryError::Unreachable {
            url: self.redacted.clone(),
            reason: error_chain(&error.without_url()),
        }
    }

    fn too_large(&self) -> QueryError {
        QueryError::TooLarge {
            url: self.redacted.clone(),
            limit: self.max_response_bytes,
        }
    }

    fn cut_off(&self, received: usize, error: reqwest::Error) -> QueryError {
        QueryError::CutOff {
            url: self.redacted.clone(),
            received,
            reason: error_chain(&error.without_url()),
        }
    }
}

fn http_client(options: &Options) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("gpu-monitoring-api/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(options.insecure_skip_verify);
    for certificate in &options.ca_certificates {
        builder = builder.add_root_certificate(certificate.clone());
    }
    builder.build()
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

/// The URL's userinfo as basic auth, percent-decoded: `Url` keeps it encoded, and a
/// password such as `p@ss` can only be written `p%40ss` in a URL.
pub fn userinfo_auth(base: &Url) -> Option<Auth> {
    if base.username().is_empty() && base.password().is_none() {
        return None;
    }
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some(Auth::Basic {
        username: decode(base.username()),
        password: decode(base.password().unwrap_or_default()).into(),
    })
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
        let Some(Auth::Basic { username, password }) = userinfo_auth(&base) else {
            panic!("userinfo is basic auth");
        };
        assert_eq!(
            (username.as_str(), password.expose_secret()),
            ("admin", "s3cret")
        );
    }

    #[test]
    fn percent_encoded_userinfo_is_sent_decoded() {
        let Some(Auth::Basic { username, password }) =
            userinfo_auth(&url("http://ops%40corp:p%40ss%3Aw0rd@prom:9090"))
        else {
            panic!("userinfo is basic auth");
        };
        assert_eq!(
            (username.as_str(), password.expose_secret()),
            ("ops@corp", "p@ss:w0rd")
        );
    }

    #[test]
    fn a_client_with_userinfo_shows_no_password_in_its_debug_output() {
        let client = Client::new(
            &url("http://admin:s3cret@prom:9090"),
            Duration::from_secs(1),
        )
        .expect("client builds");
        assert!(!format!("{client:?}").contains("s3cret"), "{client:?}");
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
        let url = String::from("http://prom:9090/");
        assert!(
            !QueryError::TooLarge {
                url: url.clone(),
                limit: 1
            }
            .is_transient()
        );
        let cut_off = QueryError::CutOff {
            url,
            received: 1,
            reason: String::new(),
        };
        assert!(cut_off.is_transient());
    }

    #[test]
    fn a_url_without_userinfo_sends_no_basic_auth() {
        assert!(userinfo_auth(&url("http://prom:9090")).is_none());
    }
}
