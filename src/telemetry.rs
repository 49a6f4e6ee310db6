//! Logging set-up.
//!
//! Levels: INFO for start-up, the bound address and shutdown; DEBUG for each poll and each
//! request; WARN when a poll fails while older data is still served; ERROR for what an
//! operator must act on. `RUST_LOG` overrides the default of `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stderr, coloured only on a terminal so that
/// collected logs carry no escape codes.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
