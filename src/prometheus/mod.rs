//! The Prometheus HTTP API, as far as this service uses it: instant queries.
//!
//! Everything that comes back is untrusted input. [`response`] decodes it into [`Sample`]s or
//! a [`QueryError`] that says what was wrong, and nothing here panics on what Prometheus sends.

mod auth;
mod client;
mod response;

pub use auth::{Auth, BearerToken, CredentialError, file_problem, read_secret_file};
pub use client::{
    Answer, Client, DEFAULT_MAX_RESPONSE_BYTES, Options, QueryError, redact as redact_url,
    userinfo_auth,
};
pub use response::{
    DecodeError, Labels, Sample, Text, Vector, abbreviate, decode, parse_sample_value,
};
