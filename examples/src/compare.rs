//! Byte-for-byte comparison of two directory trees (used to prove restores).

use std::collections::BTreeMap;
use std::path::Path;

/// The first difference found between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDifference {
    /// Path relative to the roots.
    pub path: String,
    /// What differs.
    pub what: String,
}

impl std::fmt::Display for TreeDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

enum Entry {
    File(Vec<u8>),
    Dir,
    Link(std::path::PathBuf),
}

fn collect(root: &Path) -> std::io::Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return Ok(out);
    }
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = e.file_type()?;
            if ft.is_symlink() {
                out.insert(child, Entry::Link(std::fs::read_link(e.path())?));
            } else if ft.is_dir() {
                stack.push((child.clone(), e.path()));
                out.insert(child, Entry::Dir);
            } else if ft.is_file() {
                out.insert(child, Entry::File(std::fs::read(e.path())?));
            }
        }
    }
    Ok(out)
}

/// Compares entries, types, file contents and symlink targets of two trees; `Ok(None)` when
/// they are equal. A missing root counts as an empty tree.
pub fn compare_trees(a: &Path, b: &Path) -> std::io::Result<Option<TreeDifference>> {
    let left = collect(a)?;
    let right = collect(b)?;
    for (path, l) in &left {
        let diff = |what: &str| {
            Some(TreeDifference {
                path: path.clone(),
                what: what.to_owned(),
            })
        };
        match (l, right.get(path)) {
            (_, None) => return Ok(diff("missing from the second tree")),
            (Entry::File(x), Some(Entry::File(y))) if x != y => return Ok(diff("contents differ")),
            (Entry::Link(x), Some(Entry::Link(y))) if x != y => {
                return Ok(diff("symlink targets differ"));
            }
            (Entry::File(_), Some(Entry::File(_)))
            | (Entry::Dir, Some(Entry::Dir))
            | (Entry::Link(_), Some(Entry::Link(_))) => {}
            _ => return Ok(diff("types differ")),
        }
    }
    if let Some(extra) = right.keys().find(|k| !left.contains_key(*k)) {
        return Ok(Some(TreeDifference {
            path: extra.clone(),
            what: "only in the second tree".into(),
        }));
    }
    Ok(None)
}
