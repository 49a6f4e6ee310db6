//! Arbitrary bytes as a Prometheus answer, through decode, join, memory and render; the
//! target passes when nothing panics.

#![no_main]

#[path = "../poll_path.rs"]
mod poll_path;

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    poll_path::snapshot_from(body);
});
