//! Path filters: glob patterns over paths relative to an item's root (the home directory for
//! excludes and file selections).

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A compiled list of glob patterns matched against `/`-separated relative paths.
///
/// A pattern that matches a directory matches everything below it. A leading `/` anchors
/// nothing extra (every path is already relative to the root) and is dropped. An empty
/// filter matches nothing.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct PathFilter {
    patterns: Vec<String>,
    set: GlobSet,
}

impl PathFilter {
    /// Compiles `patterns`; an invalid one gives [`Error::InvalidGlob`] naming it.
    pub fn new<I, S>(patterns: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut builder = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for p in patterns {
            let original: String = p.into();
            let trimmed = original.trim();
            let pattern = trimmed.trim_start_matches('/').trim_end_matches('/');
            if pattern.is_empty() {
                return Err(Error::invalid(
                    "glob pattern",
                    format!("{original:?} is empty"),
                ));
            }
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|source| Error::InvalidGlob {
                    pattern: original.clone(),
                    source,
                })?;
            builder.add(glob);
            kept.push(original);
        }
        let set = builder.build().map_err(|source| Error::InvalidGlob {
            pattern: kept.join(", "),
            source,
        })?;
        Ok(Self {
            patterns: kept,
            set,
        })
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` itself matches (no ancestor check).
    pub fn matches(&self, path: &str) -> bool {
        !self.patterns.is_empty() && self.set.is_match(path)
    }

    /// Whether `path` or any of its ancestors matches.
    pub fn matches_with_ancestors(&self, path: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let mut end = path.len();
        loop {
            if self.set.is_match(&path[..end]) {
                return true;
            }
            match path[..end].rfind('/') {
                Some(i) => end = i,
                None => return false,
            }
        }
    }

    /// A new filter with the patterns of both.
    pub fn union(&self, other: &PathFilter) -> Result<PathFilter> {
        PathFilter::new(self.patterns.iter().chain(other.patterns.iter()).cloned())
    }
}

impl Default for PathFilter {
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

impl PartialEq for PathFilter {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for PathFilter {}

impl fmt::Debug for PathFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PathFilter").field(&self.patterns).finish()
    }
}

impl TryFrom<Vec<String>> for PathFilter {
    type Error = Error;
    fn try_from(v: Vec<String>) -> Result<Self> {
        PathFilter::new(v)
    }
}

impl From<PathFilter> for Vec<String> {
    fn from(f: PathFilter) -> Vec<String> {
        f.patterns
    }
}

/// Include and exclude filters for a tree item: a path is selected when it (or an ancestor)
/// matches an include (or there are no includes) and neither it nor an ancestor matches an
/// exclude.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PathSelection {
    /// Paths to take; empty takes everything.
    pub include: PathFilter,
    /// Paths to leave out.
    pub exclude: PathFilter,
}

impl PathSelection {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Builds a selection from include and exclude patterns.
    pub fn new<I, J, S, T>(include: I, exclude: J) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        J: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Ok(Self {
            include: PathFilter::new(include)?,
            exclude: PathFilter::new(exclude)?,
        })
    }

    /// Whether the file or directory at `path` is selected.
    pub fn selects(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.matches_with_ancestors(path))
            && !self.exclude.matches_with_ancestors(path)
    }

    /// Whether anything below directory `dir` could be selected (so the walk should enter).
    pub fn may_select_below(&self, dir: &str) -> bool {
        !self.exclude.matches_with_ancestors(dir)
    }

    /// Whether everything is selected.
    pub fn is_all(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_pattern_is_named() {
        match PathFilter::new(["ok/*", "bad[", "x"]) {
            Err(Error::InvalidGlob { pattern, .. }) => assert_eq!(pattern, "bad["),
            other => panic!("{other:?}"),
        }
        assert!(PathFilter::new([""]).is_err());
    }

    #[test]
    fn directory_match_covers_subtree() {
        let f = PathFilter::new(["/public_html/cache", "*.log"]).unwrap();
        assert!(f.matches_with_ancestors("public_html/cache/a/b.txt"));
        assert!(f.matches_with_ancestors("logs/x/error.log"));
        assert!(!f.matches_with_ancestors("public_html/index.php"));
        assert!(!PathFilter::default().matches_with_ancestors("anything"));
    }

    #[test]
    fn selection_includes_and_excludes() {
        let s = PathSelection::new(["public_html"], ["public_html/tmp"]).unwrap();
        assert!(s.selects("public_html/index.php"));
        assert!(!s.selects("public_html/tmp/x"));
        assert!(!s.selects("mail/inbox"));
        assert!(PathSelection::all().selects("x/y"));
    }

    #[test]
    fn serde_validates() {
        let f = PathFilter::new(["a/**"]).unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"["a/**"]"#);
        assert_eq!(serde_json::from_str::<PathFilter>(&json).unwrap(), f);
        assert!(serde_json::from_str::<PathFilter>(r#"["a{"]"#).is_err());
    }
}
