//! Logging set-up.
//!
//! Levels: INFO for start-up, the bound address and shutdown; DEBUG for each poll and each
//! request; WARN when a poll fails while older data is still served; ERROR for what an
//! operator must act on. `RUST_LOG` overrides the default of `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stderr, coloured only on a terminal so that
/// collected logs carry no escape codes.
///
/// A `RUST_LOG` that is not a valid filter is reported once logging works, rather than
/// ignored: an operator who asked for `debug` should learn why none appears.
pub fn init() {
    let requested = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let parsed = requested.as_deref().map(EnvFilter::try_new);
    let (filter, invalid) = match parsed {
        Some(Ok(filter)) => (filter, None),
        Some(Err(error)) => (EnvFilter::new("info"), Some(error)),
        None => (EnvFilter::new("info"), None),
    };

    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(error) = invalid {
        tracing::warn!(error = %error, "RUST_LOG is not a valid filter; logging at info");
    }
}
