//! Byte-level helpers shared by every object of the format: magics, versions and a bounds-
//! checked reader that turns short or malformed input into [`Error::Integrity`].

use crate::error::{Error, Result};

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Magic of the repository config object.
pub const CONFIG_MAGIC: &[u8; 8] = b"BKUPCONF";
/// Magic at the start of a pack.
pub const PACK_MAGIC: &[u8; 8] = b"BKUPPACK";
/// Magic at the very end of a pack.
pub const TRAILER_MAGIC: &[u8; 8] = b"BKUPTRLR";
/// Magic of an index object.
pub const INDEX_MAGIC: &[u8; 8] = b"BKUPINDX";
/// Magic of a snapshot object.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"BKUPSNAP";

/// Reads little-endian fields from a byte slice, failing with [`Error::Integrity`] naming
/// `object` when the input is too short.
#[derive(Debug)]
pub(crate) struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
    object: &'a str,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(buf: &'a [u8], object: &'a str) -> Self {
        Self {
            buf,
            pos: 0,
            object,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn fail(&self, reason: impl Into<String>) -> Error {
        Error::integrity(self.object, reason)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.fail(format!(
                "truncated: needed {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            )));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Checks an 8-byte magic followed by a u16 version among `versions`; returns it.
    pub(crate) fn magic_and_versions(&mut self, magic: &[u8; 8], versions: &[u16]) -> Result<u16> {
        let found = self.array::<8>()?;
        if &found != magic {
            return Err(self.fail(format!(
                "bad magic: expected {:?}",
                String::from_utf8_lossy(magic)
            )));
        }
        let version = self.u16()?;
        if !versions.contains(&version) {
            return Err(Error::UnsupportedVersion {
                object: self.object.to_owned(),
                version,
            });
        }
        Ok(version)
    }

    /// Checks an 8-byte magic followed by the u16 version.
    pub(crate) fn magic_and_version(&mut self, magic: &[u8; 8]) -> Result<()> {
        self.magic_and_versions(magic, &[FORMAT_VERSION])
            .map(|_| ())
    }

    pub(crate) fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.fail(format!("{} unexpected trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

/// Decodes a postcard value, mapping failures to [`Error::Integrity`].
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], object: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::integrity(object, format!("malformed: {e}")))
}

/// Encodes a postcard value.
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::Internal {
        reason: format!("encoding failed: {e}"),
    })
}

/// Converts a length to the u32 the format stores, refusing what does not fit.
pub(crate) fn len_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::invalid("object size", format!("{what} of {n} bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_fails_cleanly() {
        let mut r = ByteReader::new(&[1, 2, 3], "obj");
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert!(matches!(r.u32(), Err(Error::Integrity { .. })));
        let mut r = ByteReader::new(b"BKUPPACK\x02\x00", "obj");
        assert!(matches!(
            r.magic_and_version(PACK_MAGIC),
            Err(Error::UnsupportedVersion { version: 2, .. })
        ));
        let mut r = ByteReader::new(b"NOTAPACK\x01\x00", "obj");
        assert!(r.magic_and_version(PACK_MAGIC).is_err());
    }
}
