//! The `gpu-monitoring-api` binary: configuration, logging, run, exit code.

use std::process::ExitCode;

use clap::Parser;
use gpu_monitoring_api::config::{Cli, Config};
use gpu_monitoring_api::{Application, shutdown, telemetry};

/// `EX_USAGE` from sysexits.h: the configuration or command line is wrong.
const EXIT_USAGE: u8 = 64;

/// jemalloc, configured in `.cargo/config.toml` to hand memory a poll has freed back to the
/// system within a second, so that resident memory follows what the service holds rather
/// than its peak during the largest poll so far.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if error.use_stderr() => {
            let _ = error.print();
            return ExitCode::from(EXIT_USAGE);
        }
        Err(help_or_version) => {
            let _ = help_or_version.print();
            return ExitCode::SUCCESS;
        }
    };

    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gpu-monitoring-api: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    telemetry::init();
    match Application::bind(config).await {
        Ok(app) => {
            app.run_until(shutdown::signal()).await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %error, "cannot start");
            ExitCode::FAILURE
        }
    }
}
