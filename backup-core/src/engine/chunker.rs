//! Content-defined chunking (FastCDC 2020), seeded per account.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization};

use crate::error::{Error, Result};
use crate::repo::ChunkerParams;

/// Cuts byte streams into chunks, reading into one buffer of twice the largest chunk that is
/// reused across inputs. Inputs that fit are cut in place; longer ones are cut as they are
/// read, and only the unfinished tail is moved to the front before the next read.
///
/// Written on top of `FastCDC` over slices instead of `fastcdc`'s `StreamCDC`, which moves
/// its whole buffer down after every chunk (several copies of each byte with 1 MiB chunks in
/// an 8 MiB window): here each byte is moved at most once. The cut points are the same as
/// over the whole input, because a chunk is only taken when at least the largest chunk size
/// of data follows its start (or the input has ended).
#[derive(Debug)]
pub(crate) struct Chunker {
    params: ChunkerParams,
    seed: u64,
    buf: Vec<u8>,
    buffer_len: usize,
}

impl Chunker {
    pub(crate) fn new(params: ChunkerParams, seed: u64) -> Self {
        let buffer_len = 2 * params.max_size as usize;
        Self::with_buffer(params, seed, buffer_len)
    }

    /// With a read buffer of `buffer_len` bytes (at least the largest chunk).
    fn with_buffer(params: ChunkerParams, seed: u64, buffer_len: usize) -> Self {
        Self {
            params,
            seed,
            buf: Vec::new(),
            buffer_len: buffer_len.max(params.max_size as usize),
        }
    }

    fn cdc<'a>(&self, data: &'a [u8]) -> FastCDC<'a> {
        let p = &self.params;
        FastCDC::with_level_and_seed(
            data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            Normalization::Level1,
            self.seed,
        )
    }

    /// Reads `input` to the end, calling `on_chunk` with each chunk in order; returns the
    /// number of bytes read. `what` names the input in errors.
    pub(crate) fn chunk(
        &mut self,
        mut input: impl Read,
        what: &std::path::Path,
        mut on_chunk: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let (min, max) = (self.params.min_size as usize, self.params.max_size as usize);
        if self.buf.len() < self.buffer_len {
            // Zeroed by the allocator: pages are only touched as inputs fill them.
            self.buf = vec![0; self.buffer_len];
        }
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            let mut total = 0u64;
            let mut filled = 0;
            loop {
                let mut eof = false;
                while filled < buf.len() {
                    match input.read(&mut buf[filled..]) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Error::io(what, e)),
                    }
                }
                let data = &buf[..filled];
                if eof {
                    if data.len() <= min {
                        if !data.is_empty() {
                            on_chunk(data)?;
                        }
                    } else {
                        for c in self.cdc(data) {
                            on_chunk(&data[c.offset..c.offset + c.length])?;
                        }
                    }
                    return Ok(total + filled as u64);
                }
                let mut taken = 0;
                for c in self.cdc(data) {
                    if filled - c.offset < max {
                        break;
                    }
                    on_chunk(&data[c.offset..c.offset + c.length])?;
                    taken = c.offset + c.length;
                }
                buf.copy_within(taken..filled, 0);
                total += taken as u64;
                filled -= taken;
            }
        })();
        self.buf = buf;
        result
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
    fn streamed_cuts_equal_cuts_over_the_whole_input() {
        let data = pseudo_random(300_000, 5);
        let p = params();
        let whole: Vec<(usize, usize)> = FastCDC::with_level_and_seed(
            &data[..],
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            Normalization::Level1,
            7,
        )
        .map(|c| (c.offset, c.length))
        .collect();
        // Buffers from the smallest allowed up, and a reader handing out odd-sized pieces.
        for buffer in [16384, 20000, 65536, 1 << 20] {
            struct Dribble<'a>(&'a [u8]);
            impl Read for Dribble<'_> {
                fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                    let n = out.len().min(self.0.len()).min(7777);
                    out[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let mut c = Chunker::with_buffer(p, 7, buffer);
            let mut cuts = Vec::new();
            let mut at = 0;
            let n = c
                .chunk(Dribble(&data), "x".as_ref(), |ch| {
                    assert_eq!(ch, &data[at..at + ch.len()]);
                    cuts.push((at, ch.len()));
                    at += ch.len();
                    Ok(())
                })
                .unwrap();
            assert_eq!(n, data.len() as u64);
            assert_eq!(cuts, whole, "buffer {buffer}");
        }
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
