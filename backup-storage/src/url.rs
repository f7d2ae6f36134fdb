//! Destination URLs: the scheme picks the store.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result, UrlProblem};
use crate::local::LocalStore;
use crate::sftp::SftpBuilder;

/// Opens the store a destination URL names; returns it with the root prefix inside it.
///
/// | URL | store | root |
/// |---|---|---|
/// | `file:///ABSOLUTE/PATH` | [`LocalStore`] rooted at the path (created mode 0700 if missing); every object is flushed to disk before anything can name it; directories it creates are 0700, objects 0600 | empty |
/// | `memory://` | [`InMemory`] | empty |
/// | `s3://BUCKET/PREFIX?endpoint=URL&region=R&allow_http=true` | [`AmazonS3`](object_store::aws::AmazonS3) | `PREFIX` |
/// | `sftp://USER@HOST:PORT/ABSOLUTE/PATH?key=KEYFILE&known_hosts=FILE` | [`SftpStore`](crate::SftpStore) rooted at the path | empty |
///
/// URLs are explicit: an empty or scheme-less string (`backups`, `/srv/backups`), a scheme
/// without `//` (`s3:bucket/prefix`) and a `file` URL without an absolute path
/// (`file://relative`, `file:`) are [`Error::NotExplicit`], naming the problem and the
/// accepted forms; another scheme is [`Error::UnsupportedScheme`]; everything else wrong
/// (a password, an unknown option, a bad value) is [`Error::InvalidUrl`]. [`check`] runs the
/// same checks without opening anything.
///
/// S3 credentials come from the usual AWS environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...; see
/// [`AmazonS3Builder::from_env`]), never from the URL; giving an `endpoint` switches to
/// path-style requests (MinIO, Wasabi, B2, ...). SFTP options are described on
/// [`SftpBuilder::from_url`]. Opening makes no request: an SFTP store connects on its first
/// request; only a `file` URL touches the disk, creating its directory.
pub fn open(url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let (target, shown) = parse(url)?;
    match target {
        Target::File(path) => open_file(path, shown),
        Target::Memory => Ok((Arc::new(InMemory::new()), Path::default())),
        Target::S3 { builder, root } => Ok((crate::s3::build(*builder, shown)?, root)),
        Target::Sftp(builder) => Ok((Arc::new(builder.build()?), Path::default())),
    }
}

/// The local directory a `file:///` URL names; `None` for other schemes (and bad URLs).
pub fn local_root(url: &str) -> Option<std::path::PathBuf> {
    match parse(url).ok()?.0 {
        Target::File(path) => Some(path),
        _ => None,
    }
}

/// Checks a destination URL as [`open`] does, without touching the disk or the network:
/// the explicit form, the scheme, the path, every option. What only opening can find out
/// (an S3 configuration from the environment, the default SSH key file when the URL names
/// none, whether a directory can be created) is left to [`open`].
///
/// ```
/// assert!(backup_storage::check("file:///srv/backups").is_ok());
/// assert!(backup_storage::check("s3://bucket/prefix?region=eu-west-1").is_ok());
/// for bad in ["", "/srv/backups", "s3:bucket/prefix", "file://relative", "ftp://host/x"] {
///     assert!(backup_storage::check(bad).is_err(), "{bad}");
/// }
/// ```
pub fn check(url: &str) -> Result<()> {
    parse(url).map(drop)
}

/// What a destination URL names, checked.
enum Target {
    File(PathBuf),
    Memory,
    /// Boxed: the builder holds every S3 setting (1.5 KiB).
    S3 {
        builder: Box<AmazonS3Builder>,
        root: Path,
    },
    Sftp(SftpBuilder),
}

/// Parses and checks `url` without touching the disk or the network; returns the target
/// and the URL as messages show it.
fn parse(url: &str) -> Result<(Target, String)> {
    let shown = redacted(url);
    let url = url.trim();
    let scheme = explicit_scheme(url, &shown)?;
    let invalid = |reason: &str| Error::InvalidUrl {
        url: shown.clone(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if parsed.password().is_some() {
        return Err(invalid(
            "passwords do not belong in destination URLs (S3 reads AWS_* variables, SFTP uses ?key=FILE)",
        ));
    }
    if parsed.fragment().is_some() {
        return Err(invalid(
            "destination URLs take no '#' fragment (write '#' in a path as %23)",
        ));
    }
    let target = match scheme {
        Scheme::File => Target::File(file_path(&parsed, &shown)?),
        Scheme::Memory => {
            let bare = parsed.host_str().unwrap_or("").is_empty()
                && matches!(parsed.path(), "" | "/")
                && parsed.query().is_none()
                && parsed.username().is_empty();
            if !bare {
                return Err(invalid("memory:// takes no name, path or options"));
            }
            Target::Memory
        }
        Scheme::S3 => {
            let (builder, root) = crate::s3::builder(&parsed, &shown)?;
            Target::S3 {
                builder: Box::new(builder),
                root,
            }
        }
        Scheme::Sftp => {
            let builder = SftpBuilder::from_url(url)?;
            builder.check()?;
            Target::Sftp(builder)
        }
    };
    Ok((target, shown))
}

/// The schemes this crate opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    File,
    Memory,
    S3,
    Sftp,
}

/// The scheme of an explicit URL: `SCHEME://...` with a scheme this crate opens, and
/// `file:///` followed by the path for files.
fn explicit_scheme(url: &str, shown: &str) -> Result<Scheme> {
    let not_explicit = |problem| Error::NotExplicit {
        url: shown.to_owned(),
        problem,
    };
    if url.is_empty() {
        return Err(not_explicit(UrlProblem::Empty));
    }
    let Some((scheme, rest)) = url.split_once(':').filter(|(s, _)| is_scheme(s)) else {
        return Err(not_explicit(UrlProblem::NoScheme));
    };
    let scheme = scheme.to_ascii_lowercase();
    let known = match scheme.as_str() {
        "file" => Scheme::File,
        "memory" => Scheme::Memory,
        "s3" => Scheme::S3,
        "sftp" => Scheme::Sftp,
        _ => {
            return Err(Error::UnsupportedScheme {
                scheme,
                url: shown.to_owned(),
            });
        }
    };
    if known == Scheme::File && !rest.starts_with("///") {
        return Err(not_explicit(UrlProblem::NotAbsolute));
    }
    if !rest.starts_with("//") {
        return Err(not_explicit(UrlProblem::MissingSlashes { scheme }));
    }
    Ok(known)
}

/// Whether `s` is a URL scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The local directory of a `file:///ABSOLUTE/PATH` URL.
fn file_path(parsed: &Url, shown: &str) -> Result<PathBuf> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: shown.to_owned(),
        reason: reason.to_owned(),
    };
    if parsed.query().is_some() {
        return Err(invalid("file URLs take no options"));
    }
    let path = parsed
        .to_file_path()
        .map_err(|()| invalid("not an absolute local path: file:///ABSOLUTE/PATH"))?;
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(invalid("the path contains a NUL byte"));
    }
    Ok(path)
}

fn open_file(path: PathBuf, shown: String) -> Result<(Arc<dyn ObjectStore>, Path)> {
    crate::local::create_root(&path).map_err(|source| Error::Io {
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

/// Options whose values messages may show (none of them holds a secret).
const SHOWN_OPTIONS: &[&str] = &[
    "endpoint",
    "region",
    "allow_http",
    "key",
    "known_hosts",
    "connections",
    "timeout",
];

/// The URL for messages: a password and the values of options this crate does not know
/// (which might be credentials given by mistake) are replaced by `REDACTED`.
pub(crate) fn redacted(url: &str) -> String {
    let hidden = || "(URL with '@' not shown: it may hold a password)".to_owned();
    match Url::parse(url.trim()) {
        Ok(mut parsed) => {
            if parsed.cannot_be_a_base() && url.contains('@') {
                // `scheme:user:password@host` has no authority for the parser to find.
                return hidden();
            }
            let mut changed = false;
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("REDACTED"));
                changed = true;
            }
            let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
            if pairs
                .iter()
                .any(|(k, _)| !SHOWN_OPTIONS.contains(&k.as_str()))
            {
                let shown: Vec<(String, String)> = pairs
                    .into_iter()
                    .map(|(k, v)| {
                        let v = if SHOWN_OPTIONS.contains(&k.as_str()) {
                            v
                        } else {
                            "REDACTED".to_owned()
                        };
                        (k, v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(shown);
                changed = true;
            }
            if changed {
                parsed.to_string()
            } else {
                url.to_owned()
            }
        }
        // Not a URL: show it only if it cannot hold a `user:password@` part.
        Err(_) if url.contains('@') => hidden(),
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

    /// The problem `check` and `open` report for `url`, which both must refuse alike.
    fn problem(url: &str) -> UrlProblem {
        let checked = check(url).unwrap_err();
        let opened = open(url).map(drop).unwrap_err();
        assert_eq!(checked.to_string(), opened.to_string(), "{url}");
        let msg = checked.to_string();
        assert!(!msg.contains('\n'), "one line: {msg}");
        for form in ["file:///", "s3://", "sftp://", "memory://"] {
            assert!(
                msg.contains(form),
                "{url}: the accepted forms are shown: {msg}"
            );
        }
        match checked {
            Error::NotExplicit { problem, .. } => problem,
            other => panic!("{url}: expected NotExplicit, got: {other:?}"),
        }
    }

    #[test]
    fn urls_must_be_explicit() {
        assert_eq!(problem(""), UrlProblem::Empty);
        assert_eq!(problem("   "), UrlProblem::Empty);
        for bare in [
            "x",
            "/srv/b",
            "backups",
            "./backups",
            "not a url",
            "1s3://b",
        ] {
            assert_eq!(problem(bare), UrlProblem::NoScheme, "{bare}");
        }
        for (url, scheme) in [
            ("s3:bucket/p", "s3"),
            ("S3:bucket/p", "s3"),
            ("sftp:user@host/p", "sftp"),
            ("memory:", "memory"),
            ("s3:/bucket/p", "s3"),
        ] {
            assert_eq!(
                problem(url),
                UrlProblem::MissingSlashes {
                    scheme: scheme.into()
                },
                "{url}"
            );
        }
        for url in [
            "file:",
            "file:/srv/b",
            "file://relative",
            "file://relative/path",
            "file://remotehost/x",
            "file://localhost/srv/b",
            "file://",
        ] {
            assert_eq!(problem(url), UrlProblem::NotAbsolute, "{url}");
        }
        let msg = check("/srv/b").unwrap_err().to_string();
        assert!(
            msg.contains("no scheme") && msg.contains("\"/srv/b\""),
            "{msg}"
        );
    }

    #[test]
    fn unknown_schemes_are_refused_with_the_accepted_forms() {
        for (url, scheme) in [
            ("ftp://example.com/x", "ftp"),
            ("gopher://x", "gopher"),
            ("HTTP://host/x", "http"),
            ("c:\\backups", "c"),
        ] {
            match check(url) {
                Err(Error::UnsupportedScheme { scheme: s, .. }) => assert_eq!(s, scheme, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
            let msg = open(url).map(drop).unwrap_err().to_string();
            assert!(msg.contains("file:///") && msg.contains("sftp://"), "{msg}");
        }
    }

    #[test]
    fn explicit_urls_are_accepted() {
        for url in [
            "file:///srv/backups",
            "file:///",
            "FILE:///srv/b",
            "file:///srv/my%20backups/",
            " file:///srv/backups ",
            "memory://",
            "memory:///",
            "s3://bucket",
            "s3://bucket/prefix/deeper?region=eu-west-1&endpoint=http://127.0.0.1:9000&allow_http=true",
            "sftp://user@host/srv/b?key=/k&known_hosts=/h",
            "sftp://user@host:2222/srv/b?key=/k&known_hosts=/h&connections=2&timeout=5",
            "sftp://user@[::1]/?key=/k&known_hosts=/h",
        ] {
            check(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn bad_parts_of_explicit_urls_are_refused() {
        for url in [
            "file:///srv/b?fsync=false",
            "file:///srv/b#frag",
            "file:///srv/%00b",
            "memory://name",
            "memory:///path",
            "memory://?x=1",
            "s3:///prefix",
            "s3://bucket/x?color=blue",
            "sftp://host/x?key=/k",
            "sftp://user@host?key=/k",
            "sftp://user@host/x?key=/k&colour=red",
        ] {
            match check(url) {
                Err(Error::InvalidUrl { .. }) => {}
                other => panic!("{url}: expected InvalidUrl, got: {other:?}"),
            }
        }
    }

    #[test]
    fn check_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not/yet");
        check(&format!("file://{}", missing.display())).unwrap();
        assert!(!missing.exists());
        // No key file is looked for when the URL names none.
        check("sftp://user@192.0.2.1/srv/b").unwrap();
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
        for url in [
            "sftp://user:s3cr3t@[bad/x",
            "s3:AKIA:s3cr3t@bucket/x",
            "AKIA:s3cr3t@bucket/x",
            "ftp://user:s3cr3t@host/x",
            "s3://bucket/x?aws_secret_access_key=s3cr3t",
            "sftp://u@h/x?key=/k&password=s3cr3t",
        ] {
            let msg = open(url).map(drop).unwrap_err().to_string();
            assert!(!msg.contains("s3cr3t"), "{msg}");
            let core: backup_core::Error = check(url).unwrap_err().into();
            assert!(!core.to_string().contains("s3cr3t"), "{core}");
        }
    }
}
