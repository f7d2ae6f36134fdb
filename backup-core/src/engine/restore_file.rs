//! [`RestoreFile`]: a restored file's positioned writes, the large ones around the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Files at least this large are written around the page cache where the file system allows.
const DIRECT_FILE_MIN: u64 = 1 << 20;

/// Aligned spans shorter than this go through the page cache (a direct write waits for the
/// disk, so it only pays for itself on a large span).
const DIRECT_WRITE_MIN: u64 = 64 << 10;

/// A temporary file being restored.
///
/// The whole aligned blocks of each chunk of a large file are written with `O_DIRECT`
/// (Linux) through a second handle on the same open file, and the unaligned ends of the
/// chunk through the page cache, so every block is written one way only. Filling fresh
/// page-cache pages is most of a large restore's cost on a virtual machine whose host takes
/// back the guest's free memory (a first write to such a page cost about 6 µs here; writing
/// 1 GiB took 1.5-2.0 s of system time through the page cache and 0.05 s around it;
/// docs/performance.md), and a restore need not push the server's working set out of the
/// cache. Where `O_DIRECT` is refused (at open or on a write), the file falls back to plain
/// writes.
#[derive(Debug)]
pub(crate) struct RestoreFile {
    file: File,
    direct: Option<File>,
}

impl RestoreFile {
    /// Wraps `file`, open for writing on a file of `size` bytes once restored.
    pub(crate) fn new(file: File, size: u64) -> Self {
        let direct = if size >= DIRECT_FILE_MIN {
            open_direct(&file)
        } else {
            None
        };
        Self { file, direct }
    }

    /// Writes all of `data` at `offset`; `scratch` is the calling thread's buffer for
    /// aligned copies, kept between calls.
    pub(crate) fn write_all_at(
        &mut self,
        data: &[u8],
        offset: u64,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        if let Some(direct) = &self.direct {
            let align = alignment();
            let end = offset + data.len() as u64;
            let start = offset.next_multiple_of(align);
            let stop = end / align * align;
            if stop > start && stop - start >= DIRECT_WRITE_MIN {
                let (head, rest) = data.split_at((start - offset) as usize);
                let (middle, tail) = rest.split_at((stop - start) as usize);
                let need = middle.len() + align as usize;
                if scratch.len() < need {
                    scratch.resize(need, 0);
                }
                let at = scratch.as_ptr().align_offset(align as usize);
                let aligned = &mut scratch[at..at + middle.len()];
                aligned.copy_from_slice(middle);
                match direct.write_all_at(aligned, start) {
                    Ok(()) => {
                        self.file.write_all_at(head, offset)?;
                        return self.file.write_all_at(tail, stop);
                    }
                    // Refused (an alignment this device does not take, a file system
                    // without direct writes): the whole chunk goes through the cache.
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => self.direct = None,
                    Err(e) => return Err(e),
                }
            }
        }
        self.file.write_all_at(data, offset)
    }

    /// The buffered handle, to finish the file through.
    pub(crate) fn into_file(self) -> File {
        self.file
    }
}

/// The offset and address alignment of direct writes: the page size, which every block
/// device's logical block divides (and which keeps a cached page and a direct block from
/// ever overlapping).
fn alignment() -> u64 {
    #[cfg(target_os = "linux")]
    {
        rustix::param::page_size() as u64
    }
    #[cfg(not(target_os = "linux"))]
    {
        4096
    }
}

/// A second handle with `O_DIRECT` on the file `file` has open. Opened through
/// `/proc/self/fd`, so it is the same file even if its name was replaced meanwhile.
fn open_direct(file: &File) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks of a large file written out of order at unaligned boundaries, small and large,
    /// make exactly the file.
    #[test]
    fn chunks_in_any_order_make_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let size = 5 * 1024 * 1024 + 12_345;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4099) as u8).collect();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut f = RestoreFile::new(file, size as u64);
        let direct = f.direct.is_some();
        let cuts = [
            0, 1, 100_000, 100_003, 1_300_000, 2_000_001, 4_194_304, size,
        ];
        let mut scratch = Vec::new();
        for w in cuts.windows(2).rev() {
            f.write_all_at(&data[w[0]..w[1]], w[0] as u64, &mut scratch)
                .unwrap();
        }
        // Where the file system takes direct writes, none of these was refused.
        assert_eq!(f.direct.is_some(), direct);
        drop(f.into_file());
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    /// A small file takes no direct handle; its writes go through the cache.
    #[test]
    fn small_files_are_written_plainly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let mut f = RestoreFile::new(file, 1000);
        assert!(f.direct.is_none());
        f.write_all_at(b"abc", 5, &mut Vec::new()).unwrap();
        drop(f.into_file());
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0\0\0\0abc");
    }
}
