//! Trees: one sealed blob per directory, listing its entries sorted by name. A directory's
//! entry holds its child tree's id, so an unchanged directory is the same blob (deduplicated).
//! Document items (databases, zones, ...) are one flat tree of files.
//!
//! Two encodings exist. [`TreeVersion::V1`] (snapshot objects of versions 1 and 2) keeps a
//! name, a node, the permission bits and the mtime. [`TreeVersion::V2`] (snapshot objects
//! of version 3) adds what a hosting account needs back: owner, extended attributes (POSIX
//! ACLs among them), hardlinks, sparse files and special files. A tree blob carries no
//! version of its own: the snapshot that references it says how to read it, so the same
//! bytes always mean one thing to each reader.

use serde::{Deserialize, Serialize};

use super::format::{decode, encode};
use crate::error::{Error, Result};
use crate::model::{ChunkId, ItemStats};

/// How the tree blobs of a snapshot are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TreeVersion {
    /// Name, node (file, directory, symlink), permission bits and mtime.
    V1,
    /// Version 1 plus owner, extended attributes, hardlinks, sparse files, special files.
    #[default]
    V2,
}

/// A data range of a sparse file: `offset` and `len` in bytes. Everything outside the
/// ranges is a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// Where the data starts in the file.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
}

/// Identifies the files of one item that are hard links to each other: the device and
/// inode they shared when backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// What kind of special file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpecialKind {
    /// A named pipe (never opened by a backup).
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    /// A regular file: its size and the chunks that make it up, in order.
    File {
        /// Bytes (the apparent size, holes included).
        size: u64,
        /// Content chunks, in order: the file's bytes, or for a sparse file the bytes of
        /// its data ranges one after the other.
        chunks: Vec<ChunkId>,
        /// For a sparse file, its data ranges (sorted, not overlapping, inside `size`);
        /// `None` for a file without holes.
        extents: Option<Vec<Extent>>,
        /// For a file with more than one link, what the links share.
        link: Option<LinkId>,
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
    /// A FIFO or device node (recreated, never read).
    Special {
        /// Which kind.
        kind: SpecialKind,
        /// The device number of a device node (0 for a FIFO).
        rdev: u64,
    },
}

/// An entry's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// One extended attribute (POSIX ACLs are the `system.posix_acl_access` and
/// `system.posix_acl_default` attributes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// The attribute's name, with its namespace (`user.`, `system.`, `security.`, ...).
    pub name: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

/// The attributes of a file, directory or link beside its content.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attrs {
    /// Permission bits (`st_mode & 0o7777`: setuid, setgid and sticky included).
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Owner; `None` where none was recorded (version 1 trees, documents).
    pub owner: Option<Owner>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// The name: one path component, raw bytes (Unix names need not be UTF-8).
    pub name: Vec<u8>,
    /// What it is.
    pub node: Node,
    /// Mode, mtime, owner and extended attributes.
    pub attrs: Attrs,
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

/// Version 1 encodings, read only.
mod v1 {
    use serde::Deserialize;

    use crate::model::{ChunkId, ItemStats};

    #[derive(Deserialize)]
    pub(super) enum Node {
        File { size: u64, chunks: Vec<ChunkId> },
        Dir { tree: ChunkId, stats: ItemStats },
        Symlink { target: Vec<u8> },
    }

    #[derive(Deserialize)]
    pub(super) struct TreeEntry {
        pub(super) name: Vec<u8>,
        pub(super) node: Node,
        pub(super) mode: u32,
        pub(super) mtime_ns: i64,
    }

    #[derive(Deserialize)]
    pub(super) struct Tree {
        pub(super) entries: Vec<TreeEntry>,
    }
}

impl From<v1::TreeEntry> for TreeEntry {
    fn from(e: v1::TreeEntry) -> Self {
        let node = match e.node {
            v1::Node::File { size, chunks } => Node::File {
                size,
                chunks,
                extents: None,
                link: None,
            },
            v1::Node::Dir { tree, stats } => Node::Dir { tree, stats },
            v1::Node::Symlink { target } => Node::Symlink { target },
        };
        TreeEntry {
            name: e.name,
            node,
            attrs: Attrs {
                mode: e.mode,
                mtime_ns: e.mtime_ns,
                owner: None,
                xattrs: Vec::new(),
            },
        }
    }
}

impl Tree {
    /// Serializes (postcard, [`TreeVersion::V2`]).
    pub fn encode(&self) -> Result<Vec<u8>> {
        encode(self)
    }

    /// Parses a tree blob of `version` and checks it: names sorted, unique, each a single
    /// safe component; a sparse file's ranges sorted, apart and inside its size. An unsafe
    /// name is [`Error::PathEscapes`]; anything else is [`Error::Integrity`].
    pub fn decode(bytes: &[u8], id: &ChunkId, version: TreeVersion) -> Result<Self> {
        let object = format!("tree {id}");
        let tree: Tree = match version {
            TreeVersion::V2 => decode(bytes, &object)?,
            TreeVersion::V1 => {
                let old: v1::Tree = decode(bytes, &object)?;
                Tree {
                    entries: old.entries.into_iter().map(TreeEntry::from).collect(),
                }
            }
        };
        for (i, e) in tree.entries.iter().enumerate() {
            if !is_safe_name(&e.name) {
                return Err(Error::PathEscapes {
                    path: String::from_utf8_lossy(&e.name).into_owned(),
                });
            }
            if i > 0 && tree.entries[i - 1].name >= e.name {
                return Err(Error::integrity(object, "entries not sorted or not unique"));
            }
            if let Node::File {
                size,
                extents: Some(extents),
                ..
            } = &e.node
                && !extents_valid(extents, *size)
            {
                return Err(Error::integrity(object, "sparse file ranges out of order"));
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
                Node::Special { .. } => {}
            }
        }
        s
    }
}

/// Whether `extents` are sorted, non-empty, apart and end within `size`.
pub fn extents_valid(extents: &[Extent], size: u64) -> bool {
    let mut end = 0u64;
    for x in extents {
        let Some(stop) = x.offset.checked_add(x.len) else {
            return false;
        };
        if x.len == 0 || x.offset < end || stop > size {
            return false;
        }
        end = stop;
    }
    true
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
            attrs: Attrs {
                mode: 0o777,
                ..Attrs::default()
            },
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
                    Tree::decode(&t.encode().unwrap(), &id, TreeVersion::V2),
                    Err(Error::PathEscapes { .. })
                ),
                "{bad:?}"
            );
        }
        let unsorted = Tree {
            entries: vec![entry(b"b"), entry(b"a")],
        };
        assert!(matches!(
            Tree::decode(&unsorted.encode().unwrap(), &id, TreeVersion::V2),
            Err(Error::Integrity { .. })
        ));
        assert!(Tree::decode(&[0xff, 0xff, 0xff], &id, TreeVersion::V2).is_err());
    }

    /// A version 1 tree (the bytes of the format document's example) reads as version 2
    /// entries with no owner.
    #[test]
    fn version_1_trees_still_read() {
        let mut bytes = vec![0x01, 0x05];
        bytes.extend_from_slice(b"a.txt");
        bytes.extend_from_slice(&[0x00, 0x05, 0x01]);
        bytes.extend_from_slice(&[7; 32]);
        bytes.extend_from_slice(&[0xa4, 0x03, 0x80, 0xa8, 0xd6, 0xb9, 0x07]);
        let t = Tree::decode(&bytes, &ChunkId([0; 32]), TreeVersion::V1).unwrap();
        assert_eq!(t.entries.len(), 1);
        let e = &t.entries[0];
        assert_eq!(e.name, b"a.txt");
        assert_eq!(
            e.node,
            Node::File {
                size: 5,
                chunks: vec![ChunkId([7; 32])],
                extents: None,
                link: None
            }
        );
        assert_eq!(e.attrs.mode, 0o644);
        assert_eq!(e.attrs.mtime_ns, 1_000_000_000);
        assert_eq!(e.attrs.owner, None);
    }

    #[test]
    fn sparse_ranges_are_checked() {
        let x = |offset, len| Extent { offset, len };
        assert!(extents_valid(&[x(0, 4), x(8, 4)], 12));
        assert!(extents_valid(&[], 100));
        assert!(!extents_valid(&[x(8, 4), x(0, 4)], 12));
        assert!(!extents_valid(&[x(0, 4), x(2, 4)], 12));
        assert!(!extents_valid(&[x(0, 13)], 12));
        assert!(!extents_valid(&[x(0, 0)], 12));
        assert!(!extents_valid(&[x(u64::MAX, 2)], u64::MAX));
        let t = Tree {
            entries: vec![TreeEntry {
                name: b"s".to_vec(),
                node: Node::File {
                    size: 10,
                    chunks: vec![],
                    extents: Some(vec![x(5, 10)]),
                    link: None,
                },
                attrs: Attrs::default(),
            }],
        };
        assert!(matches!(
            Tree::decode(&t.encode().unwrap(), &ChunkId([0; 32]), TreeVersion::V2),
            Err(Error::Integrity { .. })
        ));
    }
}
