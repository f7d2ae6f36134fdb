//! Identifiers: newtypes over [`uuid::Uuid`] so that an account id can never be passed where a
//! snapshot id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $new:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random identifier.
            pub fn new() -> Self {
                Self(Uuid::$new())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// Builds an identifier from the 16 bytes of its UUID.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// The 16 bytes of the UUID.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|e| Error::invalid($what, format!("{s:?} is not a UUID: {e}")))
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

id_type!(
    /// Identity of an account: stable across renames and unique across servers.
    AccountId, "account id", new_v4
);
id_type!(
    /// Identity of a snapshot: a UUIDv7, so ids sort by creation time.
    SnapshotId, "snapshot id", now_v7
);
id_type!(
    /// Identity of a backup job.
    JobId, "job id", new_v4
);
id_type!(
    /// Identity of a backup destination.
    DestinationId, "destination id", new_v4
);
id_type!(
    /// Identity of a queued task: a UUIDv7, so ids sort by enqueue time.
    TaskId, "task id", now_v7
);
id_type!(
    /// Identity of one run of a job (every task it enqueued names it).
    RunId, "run id", now_v7
);
id_type!(
    /// Identity of a tag.
    TagId, "tag id", new_v4
);
id_type!(
    /// Identity of an organization (MSP tenant, reseller).
    OrganizationId, "organization id", new_v4
);
id_type!(
    /// Identity of a queue priority group.
    PriorityGroupId, "priority group id", new_v4
);
id_type!(
    /// Identity of a download request.
    DownloadId, "download id", new_v4
);

/// A 32-byte content identifier: keyed BLAKE3 of a blob's plaintext (chunk, tree) or of a
/// whole object (pack). Keyed per account, so equal ids across accounts mean nothing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

/// Hashes the first 8 bytes only: the id is already a keyed hash, uniform and not chosen by
/// anyone without the account's key.
impl std::hash::Hash for ChunkId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

/// A hasher for maps keyed by ids that are keyed hashes themselves ([`ChunkId`], stat cache
/// keys): it takes their bytes as they are instead of hashing them again, which made SipHash
/// a tenth of a no-op backup (one lookup per file and chunk). Not for keys anyone can choose.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for piece in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..piece.len()].copy_from_slice(piece);
            self.0 = self.0.rotate_left(23) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(23) ^ n;
    }
}

/// Builds [`IdHasher`]s (for `HashMap::default()` and `HashSet::default()`).
pub type IdHasherBuilder = std::hash::BuildHasherDefault<IdHasher>;

impl ChunkId {
    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        s
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(Error::invalid(
                "content id",
                format!("{s:?} is not 64 hex digits"),
            ));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16);
            let lo = (pair[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
                _ => {
                    return Err(Error::invalid(
                        "content id",
                        format!("{s:?} is not 64 hex digits"),
                    ));
                }
            }
        }
        Ok(Self(out))
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

/// Identity of a pack object: keyed BLAKE3 of the whole pack, so the name authenticates it.
pub type PackId = ChunkId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_print() {
        let id = AccountId::new();
        let back: AccountId = id.to_string().parse().unwrap();
        assert_eq!(id, back);
        assert!("not-a-uuid".parse::<AccountId>().is_err());
    }

    #[test]
    fn snapshot_ids_sort_by_time() {
        let a = SnapshotId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = SnapshotId::new();
        assert!(a < b);
    }

    #[test]
    fn chunk_id_hex_round_trip() {
        let id = ChunkId([0xab; 32]);
        assert_eq!(ChunkId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(ChunkId::from_hex("zz").is_err());
        assert!(ChunkId::from_hex(&"g".repeat(64)).is_err());
    }
}
