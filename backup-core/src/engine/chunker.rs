//! Content-defined chunking (FastCDC 2020), seeded per account.

use std::io::{Cursor, Read};

use fastcdc::v2020::{FastCDC, Normalization, StreamCDC};

use crate::error::{Error, Result};
use crate::repo::ChunkerParams;

/// Inputs up to this size are read whole and cut in place; larger ones are streamed.
const WHOLE_READ_LIMIT: usize = 16 * 1024 * 1024;

/// Cuts byte streams into chunks. Reuses one buffer across inputs.
#[derive(Debug)]
pub(crate) struct Chunker {
    params: ChunkerParams,
    seed: u64,
    buf: Vec<u8>,
}

impl Chunker {
    pub(crate) fn new(params: ChunkerParams, seed: u64) -> Self {
        Self {
            params,
            seed,
            buf: Vec::new(),
        }
    }

    /// Reads `input` to the end, calling `on_chunk` with each chunk in order; returns the
    /// number of bytes read. `what` names the input in errors.
    pub(crate) fn chunk(
        &mut self,
        input: impl Read,
        what: &std::path::Path,
        mut on_chunk: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let (min, avg, max) = (
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
        );
        self.buf.clear();
        let mut limited = input.take(WHOLE_READ_LIMIT as u64 + 1);
        limited
            .read_to_end(&mut self.buf)
            .map_err(|e| Error::io(what, e))?;
        let input = limited.into_inner();
        if self.buf.len() <= WHOLE_READ_LIMIT {
            let data = &self.buf[..];
            if data.len() <= min {
                if !data.is_empty() {
                    on_chunk(data)?;
                }
                return Ok(data.len() as u64);
            }
            let cdc =
                FastCDC::with_level_and_seed(data, min, avg, max, Normalization::Level1, self.seed);
            for c in cdc {
                on_chunk(&data[c.offset..c.offset + c.length])?;
            }
            return Ok(data.len() as u64);
        }
        // Large input: stream what was read, then the rest.
        let head = std::mem::take(&mut self.buf);
        let stream = StreamCDC::with_level_and_seed(
            Cursor::new(head).chain(input),
            min,
            avg,
            max,
            Normalization::Level1,
            self.seed,
        );
        let mut total = 0u64;
        for c in stream {
            let c = c.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => Error::io(what, io),
                other => Error::io(what, std::io::Error::other(other.to_string())),
            })?;
            total += c.length as u64;
            on_chunk(&c.data)?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChunkerParams {
        ChunkerParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
        }
    }

    fn pseudo_random(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_input_in_order() {
        let data = pseudo_random(200_000, 1);
        let mut c = Chunker::new(params(), 42);
        let mut out = Vec::new();
        let n = c
            .chunk(&data[..], "x".as_ref(), |ch| {
                assert!(ch.len() <= 16384);
                out.extend_from_slice(ch);
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 200_000);
        assert_eq!(out, data);
    }

    #[test]
    fn seed_moves_boundaries_and_small_inputs_are_one_chunk() {
        let data = pseudo_random(100_000, 9);
        let cuts = |seed| {
            let mut v = Vec::new();
            Chunker::new(params(), seed)
                .chunk(&data[..], "x".as_ref(), |ch| {
                    v.push(ch.len());
                    Ok(())
                })
                .unwrap();
            v
        };
        assert_ne!(cuts(1), cuts(2));
        let mut count = 0;
        Chunker::new(params(), 1)
            .chunk(&data[..1000], "x".as_ref(), |_| {
                count += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(count, 1);
        let mut empty = 0;
        Chunker::new(params(), 1)
            .chunk(&[][..], "x".as_ref(), |_| {
                empty += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(empty, 0);
    }
}
