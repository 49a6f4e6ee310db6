//! Typed configuration, loaded once at start-up from layered sources and validated whole.
//!
//! Layers, later wins: the defaults in `config/default.toml` (compiled in, so the documented
//! defaults and the real ones cannot drift apart), a TOML file, `GPU_API_*` variables,
//! `PROMETHEUS_URL` and `PORT`, then command-line flags. Every problem in every layer is
//! collected before anything is reported, so an operator fixes a file in one round.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::Parser;
use figment::providers::{Env, Format, Toml};
use figment::value::Value;
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::DeserializeOwned;
use url::Url;

use crate::prometheus::{Auth, BearerToken, file_problem, read_secret_file, userinfo_auth};

/// The documented defaults, which are also the first layer.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// The shortest poll interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The longest poll interval accepted.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Every section and key the service knows; anything else is a typo worth reporting.
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    (
        "server",
        &[
            "listen",
            "request_timeout",
            "shutdown_grace",
            "cors_allowed_origins",
            "max_stream_subscribers",
            "header_read_timeout",
            "max_concurrent_requests",
        ],
    ),
    (
        "prometheus",
        &[
            "url",
            "query_timeout",
            "max_response_bytes",
            "bearer_token_file",
            "username",
            "password_file",
            "ca_file",
            "insecure_skip_verify",
        ],
    ),
    (
        "poller",
        &[
            "interval",
            "stale_after",
            "node_labels",
            "gpu_stale_after",
            "missing_after",
        ],
    ),
];

/// Command-line flags. Each one overrides the key it names from every other layer.
#[derive(Debug, Clone, Default, Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML file with settings; see config/default.toml for every key and its default.
    #[arg(long, env = "GPU_API_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on (server.listen), such as 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Base URL of Prometheus (prometheus.url).
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// How often to poll Prometheus (poller.interval), such as 5s.
    #[arg(long, value_name = "DURATION")]
    pub poll_interval: Option<String>,
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[prometheus]`
    pub prometheus: PrometheusConfig,
    /// `[poller]`
    pub poller: PollerConfig,
}

/// `[server]`: the HTTP side.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Time granted to in-flight work on shutdown.
    pub shutdown_grace: Duration,
    /// Browser origins allowed by CORS.
    pub cors_allowed_origins: AllowedOrigins,
    /// Most event streams open at once.
    pub max_stream_subscribers: usize,
    /// Longest time a client may take to send its request headers; also how long a
    /// keep-alive connection may sit idle between requests.
    pub header_read_timeout: Duration,
    /// Most requests in flight at once; more are answered 503 `overloaded` at once.
    pub max_concurrent_requests: usize,
}

/// Which browser origins may read the API.
#[derive(Debug, Clone, PartialEq)]
pub enum AllowedOrigins {
    /// Any origin (`["*"]`).
    Any,
    /// Exactly these origins, as `scheme://host[:port]`.
    List(Vec<HeaderValue>),
}

/// `[prometheus]`: where the data comes from.
///
/// Its `Debug` output holds no secret: userinfo is moved out of `url` into `auth`, which
/// redacts passwords and tokens.
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// Base URL of the HTTP API, without userinfo.
    pub url: Url,
    /// Deadline for one query.
    pub query_timeout: Duration,
    /// Largest answer body accepted.
    pub max_response_bytes: u64,
    /// Credentials: a bearer token file, `username` and `password_file`, or the URL's userinfo.
    pub auth: Option<Auth>,
    /// Roots from `ca_file`, trusted besides the built-in ones.
    pub ca_certificates: Vec<reqwest::Certificate>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// `[poller]`: how often and how the data is joined.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// Time between polls.
    pub interval: Duration,
    /// Age past which data is reported stale.
    pub stale_after: Duration,
    /// Labels naming a GPU's node, in order of preference.
    pub node_labels: Vec<String>,
    /// Age of a GPU's newest sample past which the GPU is reported stale.
    pub gpu_stale_after: Duration,
    /// How long a GPU that is no longer seen stays listed.
    pub missing_after: Duration,
}

/// Everything wrong with the configuration, one line per problem.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Each problem, naming its key and where the value came from.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads every layer for these flags and validates the result.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let figment = layers(cli)?;
        let port = port_override(cli);
        let config = Config::from_figment(&figment, port.as_ref().ok().copied().flatten());

        let Err(mut problems) = port else {
            return config;
        };
        problems
            .problems
            .extend(config.err().map(|e| e.problems).unwrap_or_default());
        Err(problems)
    }

    /// Validates an assembled figment; `port`, when set, replaces the listen port.
    pub fn from_figment(figment: &Figment, port: Option<u16>) -> Result<Config, ConfigError> {
        let mut read = Reader::new(figment);
        if let Err(error) = figment.data() {
            return Err(ConfigError {
                problems: vec![error.to_string()],
            });
        }
        read.unknown_keys();

        let server = read.server(port);
        let timing = read.timing();
        let prometheus = read.prometheus(timing.as_ref());
        let poller = read.poller(timing.as_ref());

        match (server, prometheus, poller) {
            (Some(server), Some(prometheus), Some(poller)) if read.problems.is_empty() => {
                Ok(Config {
                    server,
                    prometheus,
                    poller,
                })
            }
            _ => Err(ConfigError {
                problems: read.problems,
            }),
        }
    }
}

/// The first layer alone: the built-in defaults. Tests and tools merge their own layers on
/// top and hand the result to [`Config::from_figment`].
pub fn defaults() -> Figment {
    Figment::from(Named::new(DEFAULTS_LAYER, Toml::string(DEFAULTS)))
}

fn layers(cli: &Cli) -> Result<Figment, ConfigError> {
    let mut figment = defaults();

    if let Some(path) = &cli.config {
        if !path.is_file() {
            let problem = if path.is_dir() {
                "it is a directory, not a file"
            } else {
                "no such file"
            };
            return Err(ConfigError {
                problems: vec![format!("config file {}: {problem}", path.display())],
            });
        }
        let file = Toml::file_exact(path);
        if let Err(error) = file.data() {
            return Err(ConfigError {
                problems: vec![format!("config file {}: {}", path.display(), error.kind)],
            });
        }
        figment = figment.merge(file);
    }

    figment = figment
        .merge(Env::prefixed("GPU_API_").split("__").ignore(&["config"]))
        .merge(
            Env::raw()
                .only(&["PROMETHEUS_URL"])
                .map(|_| "prometheus.url".into()),
        );

    Ok(figment.merge(flags(cli)))
}

/// The flags as one layer, nested the way the TOML file nests its keys.
fn flags(cli: &Cli) -> Named {
    let mut root = Dict::new();
    for (key, flag) in FLAGS {
        let Some(value) = flag_value(cli, flag) else {
            continue;
        };
        let (section, name) = key.split_once('.').expect("flag keys are section.key");
        let table = root
            .entry(section.to_owned())
            .or_insert_with(|| Dict::new().into());
        if let Value::Dict(_, table) = table {
            table.insert(name.to_owned(), value.clone().into());
        }
    }
    Named {
        name: FLAGS_LAYER,
        data: Ok(Map::from([(Profile::Default, root)])),
    }
}

/// The flags that set a key, by key.
const FLAGS: [(&str, &str); 3] = [
    ("server.listen", "--listen"),
    ("prometheus.url", "--prometheus-url"),
    ("poller.interval", "--poll-interval"),
];

fn flag_value<'a>(cli: &'a Cli, flag: &str) -> Option<&'a String> {
    match flag {
        "--listen" => cli.listen.as_ref(),
        "--prometheus-url" => cli.prometheus_url.as_ref(),
        _ => cli.poll_interval.as_ref(),
    }
}

const DEFAULTS_LAYER: &str = "built-in defaults";
const FLAGS_LAYER: &str = "command-line flags";

/// A layer under a name of ours, so that messages can say where a value came from and the
/// loader can tell a default from a value somebody chose.
struct Named {
    name: &'static str,
    data: Result<Map<Profile, Dict>, figment::Error>,
}

impl Named {
    fn new(name: &'static str, inner: impl Provider) -> Self {
        Named {
            name,
            data: inner.data(),
        }
    }
}

impl Provider for Named {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.data.clone()
    }
}

/// `PORT`, which older deployments set, replaces the port of `server.listen` unless the
/// `--listen` flag is given.
fn port_override(cli: &Cli) -> Result<Option<u16>, ConfigError> {
    let Some(raw) = std::env::var_os("PORT") else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    let port = text.trim().parse().map_err(|_| ConfigError {
        problems: vec![format!("PORT: {text:?} is not a port number (0 to 65535)")],
    })?;
    Ok(cli.listen.is_none().then_some(port))
}

/// `poller.interval`, `prometheus.query_timeout` and `poller.stale_after`, as they will be used.
struct Timing {
    interval: Duration,
    query_timeout: Duration,
    stale_after: Duration,
}

/// Reads keys one at a time, so that one bad key does not hide the next.
struct Reader<'a> {
    figment: &'a Figment,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(figment: &'a Figment) -> Self {
        Reader {
            figment,
            problems: Vec::new(),
        }
    }

    fn server(&mut self, port: Option<u16>) -> Option<ServerConfig> {
        let listen = self.socket_addr("server.listen").map(|mut addr| {
            if let Some(port) = port {
                addr.set_port(port);
            }
            addr
        });
        let request_timeout = self.duration("server.request_timeout");
        let shutdown_grace = self.duration("server.shutdown_grace");
        let cors_allowed_origins = self.origins("server.cors_allowed_origins");
        let max_stream_subscribers = self.count("server.max_stream_subscribers");
        let header_read_timeout = self.duration("server.header_read_timeout");
        let max_concurrent_requests = self.count("server.max_concurrent_requests");

        Some(ServerConfig {
            listen: listen?,
            request_timeout: request_timeout?,
            shutdown_grace: shutdown_grace?,
            cors_allowed_origins: cors_allowed_origins?,
            max_stream_subscribers: max_stream_subscribers?,
            header_read_timeout: header_read_timeout?,
            max_concurrent_requests: max_concurrent_requests?,
        })
    }

    /// The durations that must agree with each other, read apart from the rest of their
    /// sections, so that a mistake elsewhere in a section does not hide a disagreement.
    fn timing(&mut self) -> Option<Timing> {
        let interval = self.duration("poller.interval");
        let query_timeout = self.duration("prometheus.query_timeout");
        let stale_after = self.duration("poller.stale_after");

        let mut timing = Timing {
            interval: interval?,
            query_timeout: query_timeout?,
            stale_after: stale_after?,
        };
        self.fit_defaults(&mut timing);
        self.check_timing(&timing);
        Some(timing)
    }

    fn prometheus(&mut self, timing: Option<&Timing>) -> Option<PrometheusConfig> {
        let url = self.url("prometheus.url");
        let max_response_bytes = self.byte_size("prometheus.max_response_bytes");
        let auth = self.credentials(url.as_ref());
        let ca_certificates = self.ca_bundle("prometheus.ca_file");
        let insecure_skip_verify = self.value("prometheus.insecure_skip_verify", "true or false");

        let mut url = url?;
        // Both fail only for URLs that cannot have userinfo, which then have none to remove.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Some(PrometheusConfig {
            url,
            query_timeout: timing?.query_timeout,
            max_response_bytes: max_response_bytes?,
            auth: auth?,
            ca_certificates: ca_certificates?,
            insecure_skip_verify: insecure_skip_verify?,
        })
    }

    /// At most one source of credentials, so that nobody wonders which one is sent.
    fn credentials(&mut self, url: Option<&Url>) -> Option<Option<Auth>> {
        let bearer = self.bearer("prometheus.bearer_token_file");
        let basic = self.basic("prometheus.username", "prometheus.password_file");
        let (bearer, basic) = (bearer?, basic?);
        let in_url = url.and_then(userinfo_auth);

        let conflict = match (&bearer, &basic, &in_url) {
            (Some(_), Some(_), _) => Some(("prometheus.bearer_token_file", "prometheus.username")),
            (Some(_), _, Some(_)) => {
                Some(("prometheus.bearer_token_file", "userinfo in prometheus.url"))
            }
            (_, Some(_), Some(_)) => Some(("prometheus.username", "userinfo in prometheus.url")),
            _ => None,
        };
        if let Some((key, other)) = conflict {
            return self.fail(
                key,
                format!("cannot be combined with {other}; set one kind of credentials"),
            );
        }
        Some(bearer.or(basic).or(in_url))
    }

    fn bearer(&mut self, key: &str) -> Option<Option<Auth>> {
        let Some(path) = self.optional_path(key)? else {
            return Some(None);
        };
        match BearerToken::load(&path) {
            Ok(token) => Some(Some(Auth::Bearer(token))),
            Err(error) => self.fail(key, error.to_string()),
        }
    }

    fn basic(&mut self, user_key: &str, password_key: &str) -> Option<Option<Auth>> {
        let username: String = self.value(user_key, "a user name, or \"\" for none")?;
        let password_file = self.optional_path(password_key)?;
        match (username.is_empty(), password_file) {
            (true, None) => Some(None),
            (false, None) => self.fail(password_key, format!("must be set when {user_key} is")),
            (true, Some(_)) => self.fail(user_key, format!("must be set when {password_key} is")),
            (false, Some(path)) => match read_secret_file(&path) {
                Ok(password) => Some(Some(Auth::Basic { username, password })),
                Err(error) => self.fail(password_key, error.to_string()),
            },
        }
    }

    fn ca_bundle(&mut self, key: &str) -> Option<Vec<reqwest::Certificate>> {
        let Some(path) = self.optional_path(key)? else {
            return Some(Vec::new());
        };
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(error) => {
                let reason = file_problem(error.kind());
                return self.fail(key, format!("cannot read {}: {reason}", path.display()));
            }
        };
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(roots) if !roots.is_empty() => Some(roots),
            _ => self.fail(key, format!("{} holds no PEM certificate", path.display())),
        }
    }

    fn poller(&mut self, timing: Option<&Timing>) -> Option<PollerConfig> {
        let node_labels = self.label_names("poller.node_labels");
        let gpu_stale_after = self.duration("poller.gpu_stale_after");
        let missing_after = self.duration("poller.missing_after");

        let timing = timing?;
        Some(PollerConfig {
            interval: timing.interval,
            stale_after: timing.stale_after,
            node_labels: node_labels?,
            gpu_stale_after: gpu_stale_after?,
            missing_after: missing_after?,
        })
    }

    /// Lets the query timeout and staleness threshold follow the interval when nobody set
    /// them, so that turning the one knob users turn most (`poller.interval`) needs no
    /// other change: the query timeout shrinks to 3/4 of a short interval, and data counts
    /// as stale after three missed polls of a long one.
    fn fit_defaults(&self, timing: &mut Timing) {
        if self.is_default("prometheus.query_timeout") {
            timing.query_timeout = timing.query_timeout.min(timing.interval * 3 / 4);
        }
        if self.is_default("poller.stale_after") {
            timing.stale_after = timing.stale_after.max(timing.interval * 3);
        }
    }

    fn check_timing(&mut self, timing: &Timing) {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&timing.interval) {
            self.problem(
                "poller.interval",
                format!(
                    "{} is outside {} to {}: shorter polls only load Prometheus, whose \
                     exporters are scraped far less often, and longer ones serve day-old data",
                    show(timing.interval),
                    show(MIN_INTERVAL),
                    show(MAX_INTERVAL)
                ),
            );
        }
        if timing.query_timeout >= timing.interval {
            self.problem(
                "prometheus.query_timeout",
                format!(
                    "{} must be shorter than poller.interval ({}), or polls would overlap",
                    show(timing.query_timeout),
                    show(timing.interval)
                ),
            );
        }
        if timing.stale_after < timing.interval {
            self.problem(
                "poller.stale_after",
                format!(
                    "{} must be at least poller.interval ({}), or every answer would be stale",
                    show(timing.stale_after),
                    show(timing.interval)
                ),
            );
        }
    }

    fn unknown_keys(&mut self) {
        let Ok(data) = self.figment.data() else {
            return;
        };
        let Some(root) = data.get(&Profile::Default) else {
            return;
        };
        for (section, value) in root {
            self.unknown_in_section(section, value);
        }
    }

    fn unknown_in_section(&mut self, section: &str, value: &Value) {
        let Some((_, keys)) = KNOWN_KEYS.iter().find(|(name, _)| *name == section) else {
            let sections: Vec<_> = KNOWN_KEYS.iter().map(|(name, _)| *name).collect();
            let message = format!(
                "unknown section; known sections are {}",
                sections.join(", ")
            );
            return self.problem(section, message);
        };
        let Some(table) = value.as_dict() else {
            return self.problem(section, "must be a table of keys".into());
        };
        for key in table.keys().filter(|key| !keys.contains(&key.as_str())) {
            let message = format!("unknown key; [{section}] has {}", keys.join(", "));
            self.problem(&format!("{section}.{key}"), message);
        }
    }

    fn value<T: DeserializeOwned>(&mut self, key: &str, expected: &str) -> Option<T> {
        match self.figment.extract_inner::<T>(key) {
            Ok(value) => Some(value),
            Err(_) => {
                let found = self.figment.find_value(key).ok();
                let found = found.as_ref().map_or("nothing".into(), describe);
                self.problem(key, format!("expected {expected}, found {found}"));
                None
            }
        }
    }

    fn duration(&mut self, key: &str) -> Option<Duration> {
        let text: String = self.value(key, "a duration such as \"5s\" or \"500ms\"")?;
        match humantime::parse_duration(&text) {
            Ok(duration) if duration.is_zero() => self.fail(key, "must be longer than zero".into()),
            Ok(duration) => Some(duration),
            Err(error) => self.fail(key, format!("{text:?} is not a duration: {error}")),
        }
    }

    /// A size in bytes, written as a number or as text such as "64MiB".
    fn byte_size(&mut self, key: &str) -> Option<u64> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Size {
            Bytes(u64),
            Text(String),
        }

        let size: Size = self.value(key, "a size such as \"64MiB\" or a number of bytes")?;
        let bytes = match size {
            Size::Bytes(bytes) => bytes,
            Size::Text(text) => match text.trim().parse::<bytesize::ByteSize>() {
                Ok(size) => size.as_u64(),
                Err(_) => {
                    let expected = "a size such as \"64MiB\" or \"500KB\", or a number of bytes";
                    return self.fail(key, format!("{text:?} is not {expected}"));
                }
            },
        };
        if bytes == 0 {
            return self.fail(key, "must be larger than zero".into());
        }
        Some(bytes)
    }

    /// A file path, where "" means none, since TOML has no null to leave a default unset.
    fn optional_path(&mut self, key: &str) -> Option<Option<PathBuf>> {
        let text: String = self.value(key, "a file path, or \"\" for none")?;
        Some((!text.trim().is_empty()).then(|| PathBuf::from(text)))
    }

    fn count(&mut self, key: &str) -> Option<usize> {
        let count: usize = self.value(key, "a whole number such as 1000")?;
        if count == 0 {
            return self.fail(key, "must be at least 1".into());
        }
        Some(count)
    }

    fn socket_addr(&mut self, key: &str) -> Option<SocketAddr> {
        let text: String = self.value(key, "an address such as \"0.0.0.0:8080\"")?;
        text.trim().parse().ok().or_else(|| {
            self.fail(
                key,
                format!("{text:?} is not an IP:PORT address such as \"0.0.0.0:8080\""),
            )
        })
    }

    fn url(&mut self, key: &str) -> Option<Url> {
        let text: String = self.value(key, "a URL such as \"http://prometheus:9090\"")?;
        let url = match Url::parse(&text) {
            Ok(url) => url,
            Err(error) => return self.fail(key, format!("the value is not a URL: {error}")),
        };

        let shown = shown_url(&url);
        if !matches!(url.scheme(), "http" | "https") {
            return self.fail(
                key,
                format!("{shown:?} must start with http:// or https://"),
            );
        }
        if url.host_str().is_none_or(str::is_empty) {
            return self.fail(key, format!("{shown:?} has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return self.fail(key, format!("{shown:?} must not have a query string or fragment; give the base URL of the Prometheus API"));
        }
        Some(url)
    }

    fn origins(&mut self, key: &str) -> Option<AllowedOrigins> {
        let list: Vec<String> = self.value(key, "a list of origins such as [\"*\"]")?;
        if list == ["*"] {
            return Some(AllowedOrigins::Any);
        }
        if list.is_empty() {
            return self.fail(key, "is empty; use [\"*\"] to allow any origin".into());
        }

        let parsed: Vec<_> = list
            .iter()
            .filter(|o| *o != "*")
            .map(|o| parse_origin(o))
            .collect();
        let mut bad: Vec<_> = parsed
            .iter()
            .filter_map(|p| p.as_ref().err().cloned())
            .collect();
        if list.iter().any(|o| o == "*") {
            bad.insert(0, "\"*\" allows any origin and cannot be combined".into());
        }
        if !bad.is_empty() {
            return self.fail(key, bad.join("; "));
        }
        Some(AllowedOrigins::List(parsed.into_iter().flatten().collect()))
    }

    fn label_names(&mut self, key: &str) -> Option<Vec<String>> {
        let labels: Vec<String> = self.value(key, "a list of label names")?;
        if labels.is_empty() {
            return self.fail(key, "must name at least one label".into());
        }
        let bad: Vec<_> = labels.iter().filter(|l| !is_label_name(l)).collect();
        if !bad.is_empty() {
            return self.fail(key, format!("{bad:?} are not Prometheus label names"));
        }
        Some(labels)
    }

    fn fail<T>(&mut self, key: &str, message: String) -> Option<T> {
        self.problem(key, message);
        None
    }

    fn problem(&mut self, key: &str, message: String) {
        let origin = self.origin(key);
        self.problems.push(format!("{key}: {message}{origin}"));
    }

    /// " (from …)" naming the file or variable that supplied the key, if known.
    fn origin(&self, key: &str) -> String {
        let Some(metadata) = self.figment.find_metadata(key) else {
            return String::new();
        };
        match &metadata.source {
            Some(Source::File(path)) => format!(" (in {})", path.display()),
            _ if metadata.name == FLAGS_LAYER => {
                let flag = FLAGS
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or("a", |(_, f)| f);
                format!(" (from the {flag} flag)")
            }
            _ if metadata.name.contains("GPU_API_") && key.contains('.') => {
                let name = format!("GPU_API_{}", key.replace('.', "__").to_uppercase());
                format!(" (from environment variable {name})")
            }
            _ if metadata.name.contains("GPU_API_") => {
                let name = format!("GPU_API_{}__*", key.to_uppercase());
                format!(" (from environment variables {name})")
            }
            _ if metadata.name.contains("environment") => {
                " (from environment variable PROMETHEUS_URL)".into()
            }
            _ => String::new(),
        }
    }

    /// True when nobody set `key`: its value is the built-in default.
    fn is_default(&self, key: &str) -> bool {
        self.figment
            .find_metadata(key)
            .is_some_and(|metadata| metadata.name == DEFAULTS_LAYER)
    }
}

/// The URL as messages may quote it: without credentials. A URL with no `//`, such as
/// `user:pass@prom:9090`, parses as scheme `user` and an opaque path that userinfo cannot be
/// removed from, so only its scheme is shown when it might hold a password.
fn shown_url(url: &Url) -> String {
    if url.cannot_be_a_base() && url.as_str().contains('@') {
        return format!("{}:…", url.scheme());
    }
    crate::prometheus::redact_url(url)
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{c:?}"),
        Value::Bool(_, b) => format!("{b}"),
        Value::Num(..) => {
            let number = serde_json::to_string(value).unwrap_or_else(|_| "?".into());
            format!("the number {number}")
        }
        Value::Empty(_, _) => "nothing".into(),
        Value::Dict(_, _) => "a table".into(),
        Value::Array(_, _) => "a list".into(),
    }
}

fn parse_origin(text: &str) -> Result<HeaderValue, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
        return Err(format!(
            "{text:?} is not an origin such as \"https://grafana.example.com\""
        ));
    }
    HeaderValue::from_str(&url.origin().ascii_serialization()).map_err(|e| format!("{text:?}: {e}"))
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Only for tests: an empty dict of the default profile, used to assert that the defaults
/// carry every known key.
#[cfg(test)]
fn default_dict() -> Dict {
    Figment::from(Toml::string(DEFAULTS))
        .data()
        .expect("defaults parse")
        .remove(&Profile::Default)
        .expect("default profile")
}

#[cfg(test)]
// figment::Jail's closures must return figment's own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn load_toml(toml: &str) -> Result<Config, ConfigError> {
        let figment = defaults().merge(Toml::string(toml));
        Config::from_figment(&figment, None)
    }

    fn problems(toml: &str) -> Vec<String> {
        load_toml(toml).expect_err("invalid config").problems
    }

    #[test]
    fn the_documented_defaults_load_and_cover_every_known_key() {
        let config = load_toml("").expect("defaults are valid");

        assert_eq!(config.server.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(config.poller.interval, Duration::from_secs(5));
        assert_eq!(config.poller.stale_after, Duration::from_secs(15));
        assert_eq!(config.prometheus.query_timeout, Duration::from_secs(3));
        assert_eq!(config.server.cors_allowed_origins, AllowedOrigins::Any);
        assert_eq!(config.server.header_read_timeout, Duration::from_secs(5));
        assert_eq!(config.server.max_concurrent_requests, 4096);
        assert_eq!(config.poller.node_labels[0], "node");
        assert_eq!(
            config.poller.node_labels.last().map(String::as_str),
            Some("instance")
        );

        let dict = default_dict();
        for (section, keys) in KNOWN_KEYS {
            let table = dict[*section].as_dict().expect("section is a table");
            assert_eq!(table.len(), keys.len(), "[{section}] documents every key");
        }
    }

    #[test]
    fn every_bad_key_is_reported_at_once() {
        let found = problems(
            r#"
            [server]
            listen = "nowhere"
            lisen = "0.0.0.0:1"
            [prometheus]
            url = "ftp://prom"
            [poller]
            interval = "5 parsecs"
            "#,
        );

        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found[0].starts_with("server.lisen: unknown key"),
            "{found:#?}"
        );
        assert!(found.iter().any(|p| p.starts_with("server.listen:")));
        assert!(found.iter().any(|p| p.starts_with("prometheus.url:")));
        assert!(found.iter().any(|p| p.starts_with("poller.interval:")));
    }

    #[test]
    fn timing_disagreements_are_reported_beside_other_mistakes_in_their_sections() {
        let found = problems(
            "[poller]\ninterval = \"5s\"\nnode_labels = []\n\
             [prometheus]\nquery_timeout = \"10s\"\nurl = \"prom:9090\"",
        );

        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found.iter().any(|p| p.starts_with("poller.node_labels:")));
        assert!(found.iter().any(|p| p.starts_with("prometheus.url:")));
        assert!(
            found
                .iter()
                .any(|p| p.contains("10s must be shorter than poller.interval (5s)")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_config_path_that_is_a_directory_is_named_as_one() {
        let cli = Cli::try_parse_from(["gpu-monitoring-api", "--config", "/"]).expect("flags");

        let found = Config::load(&cli).expect_err("a directory").problems;

        assert_eq!(found, ["config file /: it is a directory, not a file"]);
    }

    #[test]
    fn a_query_timeout_not_shorter_than_the_interval_is_refused() {
        let found = problems("[poller]\ninterval = \"2s\"\n[prometheus]\nquery_timeout = \"2s\"");

        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("must be shorter than poller.interval (2s)"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn a_bare_number_for_a_duration_asks_for_a_unit() {
        let found = problems("[poller]\ninterval = 5");

        assert!(
            found[0].contains("expected a duration such as \"5s\""),
            "{}",
            found[0]
        );
        assert!(found[0].contains("found the number 5"), "{}", found[0]);
    }

    #[test]
    fn zero_durations_are_refused() {
        let found = problems("[server]\nrequest_timeout = \"0s\"");
        assert_eq!(
            found,
            vec!["server.request_timeout: must be longer than zero"]
        );
    }

    #[test]
    fn a_zero_header_read_timeout_or_request_limit_is_refused_by_name() {
        let found = problems("[server]\nheader_read_timeout = \"0s\"\nmax_concurrent_requests = 0");
        assert_eq!(
            found,
            vec![
                "server.header_read_timeout: must be longer than zero",
                "server.max_concurrent_requests: must be at least 1",
            ]
        );
    }

    #[test]
    fn stale_after_shorter_than_the_interval_is_refused() {
        let found = problems("[poller]\nstale_after = \"1s\"");
        assert!(
            found[0].starts_with("poller.stale_after: 1s must be at least"),
            "{found:?}"
        );
    }

    #[test]
    fn credentials_in_a_bad_prometheus_url_are_not_repeated() {
        let found = problems("[prometheus]\nurl = \"ftp://user:hunter2@prom\"");
        assert!(!found[0].contains("hunter2"), "{}", found[0]);
        let found = problems("[prometheus]\nurl = \"user:hunter2@prom:9090\"");
        assert!(!found[0].contains("hunter2"), "{}", found[0]);
        let found = problems("[prometheus]\nurl = \"prom:9090\"");
        assert!(
            found[0].contains("\"prom:9090\" must start with"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn cors_origins_are_checked_and_normalised() {
        let config = load_toml("[server]\ncors_allowed_origins = [\"https://grafana.example\"]")
            .expect("valid origin");
        assert_eq!(
            config.server.cors_allowed_origins,
            AllowedOrigins::List(vec![HeaderValue::from_static("https://grafana.example")])
        );

        let found = problems("[server]\ncors_allowed_origins = [\"*\", \"https://a.example\"]");
        assert!(found[0].contains("cannot be combined"), "{found:?}");
        let found = problems("[server]\ncors_allowed_origins = [\"grafana\"]");
        assert!(
            found[0].contains("\"grafana\" is not an origin"),
            "{found:?}"
        );
    }

    #[test]
    fn node_labels_must_be_label_names() {
        let found = problems("[poller]\nnode_labels = [\"node\", \"k8s-node\"]");
        assert!(
            found[0].contains("[\"k8s-node\"] are not Prometheus label names"),
            "{found:?}"
        );
        let found = problems("[poller]\nnode_labels = []");
        assert!(found[0].contains("at least one label"), "{found:?}");
    }

    #[test]
    fn unknown_sections_are_reported() {
        let found = problems("[poler]\ninterval = \"1s\"");
        assert!(found[0].starts_with("poler: unknown section"), "{found:?}");
    }

    #[test]
    fn environment_layers_override_the_file_and_name_themselves_in_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gpu.toml",
                "[poller]\ninterval = \"7s\"\nstale_after = \"30s\"",
            )?;
            jail.set_env("GPU_API_PROMETHEUS__QUERY_TIMEOUT", "1s");
            jail.set_env("PROMETHEUS_URL", "http://prom.monitoring:9090");
            jail.set_env("PORT", "9000");
            let cli = Cli {
                config: Some("gpu.toml".into()),
                ..Cli::default()
            };

            let config = Config::load(&cli).expect("valid layers");
            assert_eq!(config.poller.interval, Duration::from_secs(7));
            assert_eq!(config.prometheus.query_timeout, Duration::from_secs(1));
            assert_eq!(
                config.prometheus.url.as_str(),
                "http://prom.monitoring:9090/"
            );
            assert_eq!(config.server.listen.port(), 9000);

            jail.set_env("GPU_API_POLLER__INTERVAL", "soon");
            let error = Config::load(&cli).expect_err("bad env duration");
            assert!(
                error.problems[0].contains("GPU_API_POLLER__INTERVAL"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn flags_override_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GPU_API_POLLER__INTERVAL", "9s");
            let cli = Cli {
                poll_interval: Some("6s".into()),
                ..Cli::default()
            };

            let config = Config::load(&cli).expect("valid layers");
            assert_eq!(config.poller.interval, Duration::from_secs(6));
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let cli = Cli {
            config: Some("/nonexistent/gpu.toml".into()),
            ..Cli::default()
        };
        let error = Config::load(&cli).expect_err("missing file");
        assert_eq!(
            error.problems,
            vec!["config file /nonexistent/gpu.toml: no such file"]
        );
    }

    #[test]
    fn a_shorter_interval_alone_brings_the_default_query_timeout_down_with_it() {
        let config = load_toml("[poller]\ninterval = \"2s\"").expect("valid");
        assert_eq!(config.prometheus.query_timeout, Duration::from_millis(1500));
        assert_eq!(config.poller.stale_after, Duration::from_secs(15));

        let config = load_toml("[poller]\ninterval = \"30s\"").expect("valid");
        assert_eq!(config.prometheus.query_timeout, Duration::from_secs(3));
        assert_eq!(config.poller.stale_after, Duration::from_secs(90));
    }

    #[test]
    fn values_somebody_set_are_never_adjusted_only_checked() {
        let found = problems("[poller]\ninterval = \"2s\"\n[prometheus]\nquery_timeout = \"3s\"");
        assert!(
            found[0].starts_with("prometheus.query_timeout: 3s must be shorter"),
            "{found:?}"
        );
    }

    #[test]
    fn a_syntax_error_is_the_only_problem_reported_and_names_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("broken.toml", "[server\nlisten = 1")?;
            let cli = Cli {
                config: Some("broken.toml".into()),
                ..Cli::default()
            };

            let error = Config::load(&cli).expect_err("syntax error");
            assert_eq!(error.problems.len(), 1, "{error}");
            assert!(error.problems[0].starts_with("config file "), "{error}");
            assert!(error.problems[0].contains("broken.toml"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_flag_value_names_the_flag() {
        figment::Jail::expect_with(|_jail| {
            let cli = Cli {
                poll_interval: Some("fast".into()),
                ..Cli::default()
            };

            let error = Config::load(&cli).expect_err("bad flag");
            assert!(
                error.problems[0].ends_with("(from the --poll-interval flag)"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_bad_port_variable_is_reported_even_when_listen_is_given() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PORT", "abc");
            let cli = Cli {
                listen: Some("127.0.0.1:0".into()),
                ..Cli::default()
            };

            let error = Config::load(&cli).expect_err("bad PORT");
            assert_eq!(
                error.problems,
                vec![r#"PORT: "abc" is not a port number (0 to 65535)"#]
            );
            Ok(())
        });
    }

    #[test]
    fn max_response_bytes_takes_a_size_or_a_number_and_refuses_zero() {
        let config = load_toml("").expect("defaults");
        assert_eq!(config.prometheus.max_response_bytes, 64 * 1024 * 1024);
        let config = load_toml("[prometheus]\nmax_response_bytes = \"512KiB\"").expect("size");
        assert_eq!(config.prometheus.max_response_bytes, 512 * 1024);
        let config = load_toml("[prometheus]\nmax_response_bytes = 1000").expect("number");
        assert_eq!(config.prometheus.max_response_bytes, 1000);

        let found = problems("[prometheus]\nmax_response_bytes = 0");
        assert_eq!(
            found,
            vec!["prometheus.max_response_bytes: must be larger than zero"]
        );
        let found = problems("[prometheus]\nmax_response_bytes = \"lots\"");
        assert!(found[0].contains("\"lots\" is not a size"), "{found:?}");
    }

    #[test]
    fn a_missing_credential_file_names_the_key_and_the_path() {
        let found = problems("[prometheus]\nbearer_token_file = \"/nonexistent/token\"");
        assert_eq!(
            found,
            vec!["prometheus.bearer_token_file: cannot read /nonexistent/token: no such file"]
        );
        let found =
            problems("[prometheus]\nusername = \"grafana\"\npassword_file = \"/nonexistent/pw\"");
        assert!(
            found[0].starts_with("prometheus.password_file: cannot read /nonexistent/pw"),
            "{found:?}"
        );
    }

    #[test]
    fn only_one_kind_of_credentials_may_be_set() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "hunter2\n").expect("write secret");
        let secret = secret.display();

        let found = problems(&format!(
            "[prometheus]\nbearer_token_file = \"{secret}\"\nusername = \"u\"\npassword_file = \"{secret}\""
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "prometheus.bearer_token_file: cannot be combined with prometheus.username"
            ),
            "{found:?}"
        );
        let found = problems(&format!(
            "[prometheus]\nurl = \"http://u:p@prom:9090\"\nbearer_token_file = \"{secret}\""
        ));
        assert!(found[0].contains("userinfo in prometheus.url"), "{found:?}");
        let found = problems("[prometheus]\nusername = \"u\"");
        assert!(
            found[0].starts_with("prometheus.password_file: must be set"),
            "{found:?}"
        );
        assert!(found.iter().all(|p| !p.contains("hunter2")), "{found:?}");
    }

    #[test]
    fn no_secret_reaches_the_debug_output_of_the_config() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "hunter2\n").expect("write secret");
        let secret = secret.display();

        let from_file = load_toml(&format!(
            "[prometheus]\nusername = \"u\"\npassword_file = \"{secret}\""
        ))
        .expect("basic auth");
        let from_url =
            load_toml("[prometheus]\nurl = \"http://u:hunter2@prom:9090\"").expect("url");
        let bearer =
            load_toml(&format!("[prometheus]\nbearer_token_file = \"{secret}\"")).expect("bearer");

        for config in [from_file, from_url, bearer] {
            assert!(config.prometheus.auth.is_some());
            let shown = format!("{config:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn a_ca_file_must_hold_a_pem_certificate() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").expect("write file");

        let found = problems(&format!(
            "[prometheus]\nca_file = \"{}\"",
            not_pem.display()
        ));
        assert!(found[0].starts_with("prometheus.ca_file: "), "{found:?}");
        assert!(found[0].contains("holds no PEM certificate"), "{found:?}");
    }

    #[test]
    fn a_prometheus_url_with_a_query_string_is_refused_rather_than_silently_trimmed() {
        let found = problems("[prometheus]\nurl = \"http://prom:9090/?x=1\"");
        assert!(
            found[0].contains("must not have a query string"),
            "{found:?}"
        );
    }

    #[test]
    fn a_poll_interval_outside_100ms_to_a_day_is_refused() {
        for interval in ["1ns", "99ms", "25h"] {
            let found = problems(&format!("[poller]\ninterval = \"{interval}\""));
            assert!(
                found
                    .iter()
                    .any(|p| p.starts_with("poller.interval: ")
                        && p.contains("outside 100ms to 1day")),
                "{interval}: {found:?}"
            );
        }
        assert!(load_toml("[poller]\ninterval = \"100ms\"").is_ok());
    }
}
