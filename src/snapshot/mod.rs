//! The immutable view of the cluster that every request is answered from.
//!
//! The poller builds a [`Snapshot`] whole, derives everything the endpoints need at that
//! moment (sort order, node summaries, averages), and publishes it through the [`Store`] with
//! one atomic swap. Readers never see a half-built snapshot and never wait for the poller.

mod fragment;
mod model;
mod rendered;
mod store;
mod summary;

pub use fragment::{Fragment, stored_block};
pub use model::{
    Anomaly, Gpu, GpuId, GpuStatus, InvalidName, NodeName, QueryFailure, Snapshot, StatusCounts,
};
pub use rendered::{Rendered, View, average_tail};
pub use store::{PollStatus, Store};
pub use summary::NodeSummary;
