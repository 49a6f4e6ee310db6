//! The `gpu-monitoring-api` binary: configuration, logging, run, exit code.

use std::process::ExitCode;

use clap::Parser;
use gpu_monitoring_api::config::{Cli, Config};
use gpu_monitoring_api::{Application, shutdown, telemetry};

/// `EX_USAGE` from sysexits.h: the configuration or command line is wrong.
const EXIT_USAGE: u8 = 64;

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
