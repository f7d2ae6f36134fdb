//! Destination URLs: the scheme picks the store.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};
use crate::local::LocalStore;
use crate::sftp::SftpBuilder;

/// Opens the store a destination URL names; returns it with the root prefix inside it.
///
/// | URL | store | root |
/// |---|---|---|
/// | `file:///ABSOLUTE/PATH` | [`LocalStore`] rooted at the path (created if missing); every object is flushed to disk before anything can name it | empty |
/// | `memory://` | [`InMemory`] | empty |
/// | `s3://BUCKET/PREFIX?endpoint=URL&region=R&allow_http=true` | [`AmazonS3`](object_store::aws::AmazonS3) | `PREFIX` |
/// | `sftp://USER@HOST:PORT/ABSOLUTE/PATH?key=KEYFILE&known_hosts=FILE` | [`SftpStore`](crate::SftpStore) rooted at the path | empty |
///
/// S3 credentials come from the usual AWS environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...; see
/// [`AmazonS3Builder::from_env`](object_store::aws::AmazonS3Builder::from_env)), never from
/// the URL; giving an `endpoint` switches to path-style requests (MinIO, Wasabi, B2, ...).
/// SFTP options are described on [`SftpBuilder::from_url`]. Opening is local: no request is
/// made until the store is used (an SFTP store connects on its first request).
pub fn open(url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let parsed = Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: redacted(url),
        reason: e.to_string(),
    })?;
    let shown = redacted(url);
    if parsed.password().is_some() {
        return Err(Error::InvalidUrl {
            url: shown,
            reason: "passwords do not belong in destination URLs (S3 reads AWS_* variables, SFTP uses ?key=FILE)".into(),
        });
    }
    match parsed.scheme() {
        "file" => open_file(&parsed, shown),
        "memory" => Ok((Arc::new(InMemory::new()), Path::default())),
        "s3" => crate::s3::open(&parsed, shown),
        "sftp" => {
            let store = SftpBuilder::from_url(url)?.build()?;
            Ok((Arc::new(store), Path::default()))
        }
        other => Err(Error::UnsupportedScheme {
            scheme: other.to_owned(),
            url: shown,
        }),
    }
}

fn open_file(parsed: &Url, shown: String) -> Result<(Arc<dyn ObjectStore>, Path)> {
    if parsed
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err(Error::InvalidUrl {
            url: shown,
            reason: "file URLs name a local path: file:///absolute/path".into(),
        });
    }
    let path = parsed.to_file_path().map_err(|()| Error::InvalidUrl {
        url: shown.clone(),
        reason: "not an absolute local path".into(),
    })?;
    std::fs::create_dir_all(&path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    // Every put is on disk before anything can name it: unmarked puts are flushed (the
    // file, then its directory) before they return; the engine's pack puts are flushed
    // together before the index that lists them (LocalStore). The catalog records a
    // snapshot only after its objects, so a power cut cannot lose what it records.
    let store = LocalStore::new(&path).map_err(|source| Error::Open { url: shown, source })?;
    Ok((Arc::new(store), Path::default()))
}

/// The URL with any password replaced, for messages.
pub(crate) fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Not a URL: show it only if it cannot hold a `user:password@` part.
        Err(_) if url.contains('@') => "(unparsable URL with '@', not shown)".to_owned(),
        Err(_) => url.to_owned(),
    }
}

/// The percent-decoded path of a URL, or an error naming it.
pub(crate) fn decoded_path(parsed: &Url, shown: &str) -> Result<String> {
    percent_encoding::percent_decode_str(parsed.path())
        .decode_utf8()
        .map(|p| p.into_owned())
        .map_err(|_| Error::InvalidUrl {
            url: shown.to_owned(),
            reason: "the path is not UTF-8 once decoded".into(),
        })
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
        assert!(msg.contains("file://") && msg.contains("sftp://"), "{msg}");
    }

    #[test]
    fn passwords_are_refused_and_never_shown() {
        for url in [
            "s3://AKIA:s3cr3t@bucket/x",
            "sftp://user:s3cr3t@127.0.0.1/x",
        ] {
            let msg = open(url).unwrap_err().to_string();
            assert!(!msg.contains("s3cr3t"), "{msg}");
            assert!(msg.contains("password"), "{msg}");
        }
        let msg = open("sftp://user:s3cr3t@[bad/x").unwrap_err().to_string();
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }
}
