//! The limit for serving on this stack, for `benches/load.sh`: files loaded into memory once
//! and answered as they are, with nothing computed per request.
//!
//! `GET /NAME` answers the bytes of `DIR/NAME` (`Content-Encoding: gzip` for `*.gz`); a
//! request with `If-None-Match: "reference"` gets a 304, as a revalidating dashboard would.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: String,
    /// Directory whose files are served.
    #[arg(long)]
    dir: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(&args.dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        files.insert(name, Bytes::from(std::fs::read(entry.path())?));
    }
    let app = Router::new()
        .route("/{name}", get(serve))
        .with_state(Arc::new(files));
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn serve(
    State(files): State<Arc<HashMap<String, Bytes>>>,
    Path(name): Path<String>,
    request: HeaderMap,
) -> Response {
    let Some(body) = files.get(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = [(header::ETAG, "\"reference\"")];
    if request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v == "\"reference\"")
    {
        return (StatusCode::NOT_MODIFIED, etag).into_response();
    }
    let encoding = if name.ends_with(".gz") {
        "gzip"
    } else {
        "identity"
    };
    let headers = [
        (header::CONTENT_TYPE, "application/json"),
        (header::CONTENT_ENCODING, encoding),
        (header::ETAG, "\"reference\""),
    ];
    (headers, body.clone()).into_response()
}
