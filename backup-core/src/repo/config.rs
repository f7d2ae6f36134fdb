//! The repository `config` object: format version and chunker parameters. No secrets.

use serde::{Deserialize, Serialize};

use super::format::{ByteReader, CONFIG_MAGIC, FORMAT_VERSION};
use crate::error::{Error, Result};

/// Content-defined chunking parameters (FastCDC 2020).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk, bytes; files up to this size are one chunk.
    pub min_size: u32,
    /// Average chunk, bytes.
    pub avg_size: u32,
    /// Largest chunk, bytes.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the ranges FastCDC 2020 accepts: min 64 B-1 MiB, avg 256 B-4 MiB,
    /// max 1 KiB-16 MiB, all even, min <= avg <= max.
    pub fn validate(&self) -> Result<()> {
        let (min, avg, max) = (self.min_size, self.avg_size, self.max_size);
        let ok = (64..=1 << 20).contains(&min)
            && (256..=4 << 20).contains(&avg)
            && (1024..=16 << 20).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "chunker parameters",
                format!(
                    "{self:?}: need even sizes, 64 B <= min <= 1 MiB, 256 B <= avg <= 4 MiB, \
                     1 KiB <= max <= 16 MiB, min <= avg <= max"
                ),
            ))
        }
    }
}

/// Settings fixed when a repository is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Chunking parameters (every account of the repository uses them, each with its own seed).
    pub chunker: ChunkerParams,
    /// Target size of a pack, bytes (a pack is closed once it reaches this size).
    pub pack_size: u32,
}

impl Default for RepoConfig {
    fn default() -> Self {
        Self {
            chunker: ChunkerParams::default(),
            pack_size: 8 * 1024 * 1024,
        }
    }
}

impl RepoConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.chunker.validate()?;
        if self.pack_size < 4096 {
            return Err(Error::invalid(
                "pack size",
                format!("{} bytes: at least 4096", self.pack_size),
            ));
        }
        Ok(())
    }

    /// The `config` object: magic, version, then the settings as JSON (readable by people).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(CONFIG_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        serde_json::to_writer(&mut out, self).map_err(|e| Error::Internal {
            reason: format!("encoding config: {e}"),
        })?;
        Ok(out)
    }

    /// Parses a `config` object.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = ByteReader::new(bytes, "config");
        r.magic_and_version(CONFIG_MAGIC)?;
        let body = r.bytes(r.remaining())?;
        let config: RepoConfig = serde_json::from_slice(body)
            .map_err(|e| Error::integrity("config", format!("malformed settings: {e}")))?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip() {
        let c = RepoConfig {
            chunker: ChunkerParams {
                min_size: 1024,
                avg_size: 4096,
                max_size: 16384,
            },
            pack_size: 65536,
        };
        let bytes = c.encode().unwrap();
        assert_eq!(RepoConfig::decode(&bytes).unwrap(), c);
        assert!(RepoConfig::decode(&bytes[..12]).is_err());
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(RepoConfig::decode(&bad).is_err());
        let json: serde_json::Value = serde_json::from_slice(&bytes[10..]).unwrap();
        assert_eq!(json["pack_size"], 65536);
    }

    #[test]
    fn invalid_params_refused() {
        let mut c = RepoConfig::default();
        c.chunker.min_size = c.chunker.avg_size * 2;
        assert!(c.validate().is_err());
    }
}
