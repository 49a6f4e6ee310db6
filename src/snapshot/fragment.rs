//! JSON compressed once, joinable many times.
//!
//! A [`Fragment`] is a piece of a response body kept twice: as JSON and as a raw DEFLATE
//! stream that ends with a sync flush. A sync flush ends on a byte boundary with no final
//! block, so the DEFLATE bytes of several fragments, and of short literal pieces framed as
//! stored blocks, concatenate into one valid stream. A response is then a gzip header, the
//! pieces' DEFLATE bytes in order, a final block, and a trailer whose CRC-32 is combined from
//! the pieces' own CRCs: no byte of a fragment is compressed, or even read, per request.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

/// A JSON piece with its DEFLATE form and checksum.
#[derive(Clone)]
pub struct Fragment {
    /// The JSON text.
    pub raw: Bytes,
    /// Raw DEFLATE (no zlib or gzip framing), ending in a sync flush, never final.
    pub deflate: Bytes,
    /// CRC-32 state of `raw`, which also knows its length, for combining.
    pub crc: crc32fast::Hasher,
}

impl std::fmt::Debug for Fragment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragment")
            .field("raw_len", &self.raw.len())
            .field("deflate_len", &self.deflate.len())
            .finish()
    }
}

impl Fragment {
    /// Compresses `raw` once.
    ///
    /// Both forms are trimmed to their length, since the snapshot keeps them as long as it
    /// is served.
    pub fn new(mut raw: Vec<u8>) -> Self {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&raw);
        let mut deflate = deflate_sync(&raw);
        raw.shrink_to_fit();
        deflate.shrink_to_fit();
        Fragment {
            deflate: Bytes::from(deflate),
            raw: Bytes::from(raw),
            crc,
        }
    }

    /// A short piece framed as stored blocks rather than compressed: cheap enough to make
    /// per request, for the parts of a body that differ between requests.
    pub fn literal(raw: impl Into<Bytes>) -> Self {
        let raw = raw.into();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&raw);
        Fragment {
            deflate: Bytes::from(stored_block(&raw, false)),
            raw,
            crc,
        }
    }

    /// The fragments one after another, as one fragment.
    ///
    /// Joins the already compressed forms instead of compressing again, so a whole-cluster
    /// body costs one copy of its nodes' fragments; separators are fragments too, made with
    /// [`Fragment::literal`]. Both buffers are sized exactly before copying: a snapshot keeps
    /// them for its whole life, and a buffer grown by doubling would keep up to half of itself
    /// unused.
    pub fn join<'a>(parts: impl IntoIterator<Item = &'a Fragment>) -> Self {
        let parts: Vec<&Fragment> = parts.into_iter().collect();
        let mut raw = Vec::with_capacity(parts.iter().map(|p| p.raw.len()).sum());
        let mut deflate = Vec::with_capacity(parts.iter().map(|p| p.deflate.len()).sum());
        let mut crc = crc32fast::Hasher::new();
        for part in parts {
            raw.extend_from_slice(&part.raw);
            deflate.extend_from_slice(&part.deflate);
            crc.combine(&part.crc);
        }
        Fragment {
            raw: raw.into(),
            deflate: deflate.into(),
            crc,
        }
    }
}

/// Compresses `input` into raw DEFLATE ending in a sync flush.
fn deflate_sync(input: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    loop {
        let consumed = compress.total_in() as usize;
        compress
            .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
            .expect("compressing into a growable buffer does not fail");
        let done = compress.total_in() as usize == input.len() && out.len() < out.capacity();
        if done {
            return out;
        }
        out.reserve(out.capacity().max(4096));
    }
}

/// `bytes` as DEFLATE stored blocks: no compression, just framing, so short per-request
/// pieces cost nothing to "compress". The last block is final when `last` is set.
pub fn stored_block(bytes: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 5 * (bytes.len() / 0xffff + 1));
    let mut chunks = bytes.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        push_stored(&mut out, &[], last);
    }
    while let Some(chunk) = chunks.next() {
        push_stored(&mut out, chunk, last && chunks.peek().is_none());
    }
    out
}

fn push_stored(out: &mut Vec<u8>, chunk: &[u8], last: bool) {
    let len = chunk.len() as u16;
    out.push(u8::from(last));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(chunk);
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn inflate(deflate: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(deflate)
            .read_to_end(&mut out)
            .expect("valid deflate");
        out
    }

    fn finished(fragment_deflate: &[u8]) -> Vec<u8> {
        let mut stream = fragment_deflate.to_vec();
        stream.extend_from_slice(&stored_block(b"", true));
        stream
    }

    #[test]
    fn a_fragment_inflates_back_to_its_json() {
        let fragment = Fragment::new(br#"{"a":1}"#.repeat(1000));

        assert_eq!(inflate(&finished(&fragment.deflate)), fragment.raw.to_vec());
        assert!(fragment.deflate.len() < fragment.raw.len() / 10);
    }

    #[test]
    fn joined_fragments_inflate_to_the_joined_json_with_a_combined_checksum() {
        let parts = [
            Fragment::new(b"[1,2]".to_vec()),
            Fragment::literal(&b","[..]),
            Fragment::new(b"[3]".to_vec()),
        ];

        let joined = Fragment::join(&parts);

        assert_eq!(joined.raw.as_ref(), b"[1,2],[3]");
        assert_eq!(inflate(&finished(&joined.deflate)), b"[1,2],[3]");
        assert_eq!(joined.crc.finalize(), crc32fast::hash(b"[1,2],[3]"));
    }

    #[test]
    fn stored_blocks_split_long_input_and_mark_only_the_last_final() {
        let long = vec![b'x'; 70_000];

        let stream = stored_block(&long, true);

        assert_eq!(inflate(&stream), long);
        assert_eq!(stream[0], 0, "first of two blocks is not final");
    }
}
