//! Destination URL parsing.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};

/// Opens the store a destination URL names; returns it with the root prefix inside it.
///
/// `file:///PATH` creates the directory if missing and roots the store there (prefix empty).
pub fn open(url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let parsed = Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "file" => {
            if parsed
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err(Error::InvalidUrl {
                    url: url.to_owned(),
                    reason: "file URLs name a local path: file:///absolute/path".into(),
                });
            }
            let path = parsed.to_file_path().map_err(|()| Error::InvalidUrl {
                url: url.to_owned(),
                reason: "not an absolute local path".into(),
            })?;
            std::fs::create_dir_all(&path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            let store = LocalFileSystem::new_with_prefix(&path)
                .map_err(|source| Error::Open {
                    url: url.to_owned(),
                    source,
                })?
                .with_automatic_cleanup(true);
            Ok((Arc::new(store), Path::default()))
        }
        "memory" => Ok((Arc::new(InMemory::new()), Path::default())),
        other => Err(Error::UnsupportedScheme {
            scheme: other.to_owned(),
            url: url.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_is_a_clear_error() {
        match open("ftp://example.com/x") {
            Err(Error::UnsupportedScheme { scheme, .. }) => assert_eq!(scheme, "ftp"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(open("not a url"), Err(Error::InvalidUrl { .. })));
        assert!(matches!(
            open("file://remotehost/x"),
            Err(Error::InvalidUrl { .. })
        ));
        let msg = open("gopher://x").unwrap_err().to_string();
        assert!(msg.contains("file://"), "{msg}");
    }
}
