//! The Prometheus HTTP API, as far as this service uses it: instant queries.
//!
//! Everything that comes back is untrusted input. [`response`] decodes it into [`Sample`]s or
//! a [`QueryError`] that says what was wrong, and nothing here panics on what Prometheus sends.

mod client;
mod response;

pub use client::{Answer, Client, QueryError, redact as redact_url};
pub use response::{
    DecodeError, Labels, Sample, Text, Vector, abbreviate, decode, parse_sample_value,
};
