//! A read-through cache between GPU dashboards and Prometheus.
//!
//! Data flows one way through the modules, in the order they are listed here:
//! [`prometheus`] asks Prometheus for the exporters' series, the [`poller`] joins them per GPU
//! on an interval using an [`exporter`] family's table of metrics, the [`snapshot`] module holds
//! the joined result that the poller publishes with one atomic swap, and [`api`] answers every
//! request from the latest snapshot without ever waiting on Prometheus.

pub mod api;
pub mod app;
pub mod config;
pub mod exporter;
pub mod poller;
pub mod prometheus;
pub mod shutdown;
pub mod snapshot;
pub mod telemetry;

pub use app::Application;
pub use config::Config;
