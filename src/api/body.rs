//! Response bodies assembled from fragments, as JSON or gzip, without re-encoding them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde::Serialize;

use crate::snapshot::{Fragment, stored_block};

/// The content codings the service can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Plain JSON.
    Identity,
    /// gzip, assembled from precompressed fragments.
    Gzip,
}

/// gzip member header: magic, DEFLATE, no flags, no mtime, no extra flags, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// A piece of a response body.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Rendered and compressed when the snapshot was published, shared by every request.
    Shared(Fragment),
    /// A few bytes made for this request; framed for gzip only if gzip is sent.
    Literal(Bytes),
}

impl Piece {
    /// A literal from static bytes.
    pub const fn text(bytes: &'static [u8]) -> Piece {
        Piece::Literal(Bytes::from_static(bytes))
    }

    /// The piece's JSON bytes.
    pub fn raw(&self) -> &Bytes {
        match self {
            Piece::Shared(fragment) => &fragment.raw,
            Piece::Literal(bytes) => bytes,
        }
    }
}

/// The envelope around `data`: the fields that are the same for every request first, and
/// the ones that are not (message, freshness) in one short literal at the end.
pub fn envelope<M: Serialize>(data: Vec<Piece>, message: &str, meta: &M) -> Vec<Piece> {
    let mut tail = Vec::with_capacity(320);
    tail.extend_from_slice(b",\"message\":");
    serde_json::to_writer(&mut tail, message).expect("a string serializes");
    tail.extend_from_slice(b",\"error\":null,\"snapshot\":");
    serde_json::to_writer(&mut tail, meta).expect("snapshot metadata serializes");
    tail.push(b'}');

    let mut pieces = Vec::with_capacity(data.len() + 2);
    pieces.push(Piece::text(b"{\"success\":true,\"data\":"));
    pieces.extend(data);
    pieces.push(Piece::Literal(tail.into()));
    pieces
}

/// The bytes to send for `pieces` in `encoding`, sharing the fragments' buffers.
pub fn encode(pieces: &[Piece], encoding: Encoding) -> Chunks {
    match encoding {
        Encoding::Identity => Chunks::new(pieces.iter().map(|p| p.raw().clone()).collect()),
        Encoding::Gzip => Chunks::new(gzip(pieces)),
    }
}

/// One gzip member: header, the pieces' DEFLATE streams (literals as stored blocks), an
/// empty final block, and a trailer whose CRC-32 is combined from the pieces' checksums.
fn gzip(pieces: &[Piece]) -> VecDeque<Bytes> {
    let mut crc = crc32fast::Hasher::new();
    let mut chunks = VecDeque::with_capacity(pieces.len() + 3);
    chunks.push_back(Bytes::from_static(&GZIP_HEADER));
    for piece in pieces {
        match piece {
            Piece::Shared(fragment) => {
                crc.combine(&fragment.crc);
                chunks.push_back(fragment.deflate.clone());
            }
            Piece::Literal(bytes) => {
                crc.update(bytes);
                chunks.push_back(Bytes::from(stored_block(bytes, false)));
            }
        }
    }
    chunks.push_back(Bytes::from(stored_block(b"", true)));

    let length: u64 = pieces.iter().map(|p| p.raw().len() as u64).sum();
    let mut trailer = crc.finalize().to_le_bytes().to_vec();
    trailer.extend_from_slice(&(length as u32).to_le_bytes());
    chunks.push_back(Bytes::from(trailer));
    chunks
}

/// A body of ready buffers with an exact length, so that `Content-Length` is sent.
#[derive(Debug)]
pub struct Chunks {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl Chunks {
    fn new(chunks: VecDeque<Bytes>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Chunks { chunks, remaining }
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn collect(chunks: Chunks) -> Vec<u8> {
        chunks
            .chunks
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect()
    }

    #[test]
    fn the_gzip_form_decompresses_to_exactly_the_identity_form() {
        let data = vec![
            Piece::Shared(Fragment::new(br#"{"gpus":[{"uuid":"GPU-1"}"#.repeat(50))),
            Piece::text(b","),
            Piece::Shared(Fragment::new(br#"{"uuid":"GPU-2"}]}"#.to_vec())),
        ];
        let pieces = envelope(
            data,
            "2 GPUs on 1 node",
            &serde_json::json!({"age_seconds": 1.5}),
        );

        let identity = collect(encode(&pieces, Encoding::Identity));
        let gzipped = collect(encode(&pieces, Encoding::Gzip));

        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[..])
            .read_to_end(&mut inflated)
            .expect("valid gzip with a correct trailer");
        assert_eq!(inflated, identity);
        assert!(identity.ends_with(
            br#""message":"2 GPUs on 1 node","error":null,"snapshot":{"age_seconds":1.5}}"#
        ));
    }

    #[test]
    fn the_body_reports_its_exact_length() {
        let pieces = envelope(vec![Piece::text(b"{}")], "m", &0);
        let chunks = encode(&pieces, Encoding::Identity);

        let expected = collect(encode(&pieces, Encoding::Identity)).len() as u64;
        assert_eq!(http_body::Body::size_hint(&chunks).exact(), Some(expected));
    }
}
