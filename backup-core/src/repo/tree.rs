//! Trees: one sealed blob per directory, listing its entries sorted by name. A directory's
//! entry holds its child tree's id, so an unchanged directory is the same blob (deduplicated).
//! Document items (databases, zones, ...) are one flat tree of files.

use serde::{Deserialize, Serialize};

use super::format::{decode, encode};
use crate::error::{Error, Result};
use crate::model::{ChunkId, ItemStats};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    /// A regular file: its size and the chunks that make it up, in order.
    File {
        /// Bytes.
        size: u64,
        /// Content chunks, in order.
        chunks: Vec<ChunkId>,
    },
    /// A directory: the id of its tree blob and the counts below it.
    Dir {
        /// Child tree blob.
        tree: ChunkId,
        /// Counts of everything below (for dry runs without reading subtrees).
        stats: ItemStats,
    },
    /// A symbolic link and its target (never followed on restore).
    Symlink {
        /// Target bytes as stored by the OS.
        target: Vec<u8>,
    },
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// The name: one path component, raw bytes (Unix names need not be UTF-8).
    pub name: Vec<u8>,
    /// What it is.
    pub node: Node,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// A directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tree {
    /// Entries, sorted by name, names unique.
    pub entries: Vec<TreeEntry>,
}

/// Whether `name` is one safe path component (not empty, `.`, `..`, no `/` or NUL).
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Tree {
    /// Serializes (postcard).
    pub fn encode(&self) -> Result<Vec<u8>> {
        encode(self)
    }

    /// Parses a tree blob and checks its names: sorted, unique, each a single safe component.
    /// An unsafe name is [`Error::PathEscapes`]; disorder is [`Error::Integrity`].
    pub fn decode(bytes: &[u8], id: &ChunkId) -> Result<Self> {
        let object = format!("tree {id}");
        let tree: Tree = decode(bytes, &object)?;
        for (i, e) in tree.entries.iter().enumerate() {
            if !is_safe_name(&e.name) {
                return Err(Error::PathEscapes {
                    path: String::from_utf8_lossy(&e.name).into_owned(),
                });
            }
            if i > 0 && tree.entries[i - 1].name >= e.name {
                return Err(Error::integrity(object, "entries not sorted or not unique"));
            }
        }
        Ok(tree)
    }

    /// Counts of this directory's entries and everything below them.
    pub fn stats(&self) -> ItemStats {
        let mut s = ItemStats::default();
        for e in &self.entries {
            match &e.node {
                Node::File { size, .. } => {
                    s.files += 1;
                    s.bytes += size;
                }
                Node::Dir { stats, .. } => {
                    s.dirs += 1;
                    s.add(stats);
                }
                Node::Symlink { .. } => s.symlinks += 1,
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8]) -> TreeEntry {
        TreeEntry {
            name: name.to_vec(),
            node: Node::Symlink {
                target: b"x".to_vec(),
            },
            mode: 0o777,
            mtime_ns: 0,
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        let id = ChunkId([0; 32]);
        for bad in [&b".."[..], b".", b"", b"a/b", b"a\0"] {
            let t = Tree {
                entries: vec![entry(bad)],
            };
            assert!(
                matches!(
                    Tree::decode(&t.encode().unwrap(), &id),
                    Err(Error::PathEscapes { .. })
                ),
                "{bad:?}"
            );
        }
        let unsorted = Tree {
            entries: vec![entry(b"b"), entry(b"a")],
        };
        assert!(matches!(
            Tree::decode(&unsorted.encode().unwrap(), &id),
            Err(Error::Integrity { .. })
        ));
        assert!(Tree::decode(&[0xff, 0xff, 0xff], &id).is_err());
    }
}
