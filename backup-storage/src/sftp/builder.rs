//! [`SftpBuilder`]: the settings of an [`SftpStore`], from code or from an `sftp://` URL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

use super::SftpStore;
use crate::error::{Error, Result};

/// Most connections a store opens by default.
const DEFAULT_CONNECTIONS: usize = 4;
/// Most connections a URL may ask for.
const MAX_CONNECTIONS: usize = 32;
/// Default time limit for one SFTP request and for connecting.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The settings of an [`SftpStore`]: server, user, remote root, key, known hosts, pool size.
///
/// ```
/// let store = backup_storage::SftpBuilder::new()
///     .with_host("127.0.0.1")
///     .with_port(2222)
///     .with_user("backup")
///     .with_root("/srv/backups")
///     .with_key_file("/etc/backup/id_ed25519")
///     .with_known_hosts("/etc/backup/known_hosts")
///     .build()
///     .unwrap(); // connects lazily, on the first request
/// assert_eq!(store.to_string(), "SftpStore(sftp://backup@127.0.0.1:2222/srv/backups)");
/// ```
#[derive(Debug, Clone)]
pub struct SftpBuilder {
    host: Option<String>,
    port: u16,
    user: Option<String>,
    root: Option<String>,
    key_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    max_connections: usize,
    timeout: Duration,
}

impl Default for SftpBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// The validated settings a store runs with.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    /// Absolute, without a trailing slash (`/` alone stays `/`).
    pub(crate) root: String,
    pub(crate) key_file: PathBuf,
    pub(crate) known_hosts: PathBuf,
    pub(crate) max_connections: usize,
    pub(crate) timeout: Duration,
}

impl Settings {
    /// `HOST:PORT` (IPv6 in brackets), for messages and known_hosts.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl SftpBuilder {
    /// Port 22, 4 connections at most, 60 s per request, `~/.ssh/known_hosts`, and the first
    /// of `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` that exists as the key.
    pub fn new() -> Self {
        Self {
            host: None,
            port: 22,
            user: None,
            root: None,
            key_file: None,
            known_hosts: None,
            max_connections: DEFAULT_CONNECTIONS,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Reads `sftp://USER@HOST[:PORT]/ABSOLUTE/PATH[?key=FILE&known_hosts=FILE&connections=N&timeout=SECS]`.
    ///
    /// The path is the store's root directory on the server (percent-decoded; created on
    /// the first write if missing). `key` is the private key file (unencrypted OpenSSH or
    /// PEM format), `known_hosts` the file holding the server's host key (OpenSSH format,
    /// `[HOST]:PORT` entries for ports other than 22, hashed entries allowed): a server
    /// whose key is missing there or different is refused. `connections` bounds the pool
    /// (1 to 32, default 4), `timeout` each request (seconds, default 60). Passwords are
    /// refused; unknown options are errors.
    pub fn from_url(url: &str) -> Result<Self> {
        let shown = crate::url::redacted(url);
        let invalid = |reason: String| Error::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if parsed.scheme() != "sftp" {
            return Err(invalid("not an sftp:// URL".into()));
        }
        if parsed.password().is_some() {
            return Err(invalid(
                "passwords do not belong in destination URLs: use ?key=FILE".into(),
            ));
        }
        let user = percent_encoding::percent_decode_str(parsed.username())
            .decode_utf8()
            .map_err(|_| invalid("the user name is not UTF-8".into()))?
            .into_owned();
        if user.is_empty() {
            return Err(invalid(
                "SFTP URLs name the user: sftp://USER@HOST/PATH".into(),
            ));
        }
        let host = match parsed.host() {
            Some(Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(Host::Ipv4(a)) => a.to_string(),
            Some(Host::Ipv6(a)) => a.to_string(),
            _ => return Err(invalid("SFTP URLs name a host".into())),
        };
        let root = crate::url::decoded_path(&parsed, &shown)?;
        let mut builder = Self::new()
            .with_host(host)
            .with_port(parsed.port().unwrap_or(22))
            .with_user(user)
            .with_root(root);
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "key" if !value.is_empty() => builder = builder.with_key_file(value.as_ref()),
                "known_hosts" if !value.is_empty() => {
                    builder = builder.with_known_hosts(value.as_ref())
                }
                "connections" => {
                    let n = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_CONNECTIONS).contains(n))
                        .ok_or_else(|| invalid(format!("connections is 1 to {MAX_CONNECTIONS}")))?;
                    builder = builder.with_max_connections(n);
                }
                "timeout" => {
                    let secs = value
                        .parse::<u64>()
                        .ok()
                        .filter(|s| (1..=3600).contains(s))
                        .ok_or_else(|| invalid("timeout is 1 to 3600 seconds".into()))?;
                    builder = builder.with_timeout(Duration::from_secs(secs));
                }
                other => {
                    return Err(invalid(format!(
                        "unknown option {other:?} (SFTP options: key, known_hosts, connections, timeout)"
                    )));
                }
            }
        }
        Ok(builder)
    }

    /// The server's host name or address.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The server's port (default 22).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The user to log in as.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The store's root directory on the server (absolute).
    pub fn with_root(mut self, root: impl Into<String>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// The private key file to authenticate with.
    pub fn with_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }

    /// The known_hosts file that must hold the server's host key.
    pub fn with_known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts = Some(path.into());
        self
    }

    /// The most SSH connections the store keeps open at once (at least 1).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The time limit for connecting and for each SFTP request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings that need neither the disk nor the network: a host, a user, an
    /// absolute root without `.`, `..` or NUL. [`build`](Self::build) checks them too.
    pub(crate) fn check(&self) -> Result<()> {
        self.checked().map(drop)
    }

    /// The host, the user and the root (without a trailing slash), checked.
    fn checked(&self) -> Result<(String, String, String)> {
        let host = self.host.clone().filter(|h| !h.is_empty());
        let user = self.user.clone().filter(|u| !u.is_empty());
        let invalid = |reason: &str| Error::InvalidUrl {
            url: self.shown(),
            reason: reason.to_owned(),
        };
        let host = host.ok_or_else(|| invalid("no host"))?;
        let user = user.ok_or_else(|| invalid("no user"))?;
        let root = self.root.clone().unwrap_or_default();
        if !root.starts_with('/') {
            return Err(invalid("the root directory must be an absolute path"));
        }
        if root.split('/').any(|s| s == "." || s == "..") || root.contains('\0') {
            return Err(invalid(
                "the root directory must not contain . or .. or NUL",
            ));
        }
        let trimmed = root.trim_end_matches('/');
        let root = if trimmed.is_empty() {
            "/".to_owned()
        } else {
            trimmed.to_owned()
        };
        Ok((host, user, root))
    }

    /// The settings as a URL, for messages.
    fn shown(&self) -> String {
        format!(
            "sftp://{}@{}:{}{}",
            self.user
                .as_deref()
                .filter(|u| !u.is_empty())
                .unwrap_or("?"),
            self.host
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or("?"),
            self.port,
            self.root.as_deref().unwrap_or("")
        )
    }

    /// Checks the settings and returns the store; nothing is contacted until first use.
    /// Without a key file given, the first of `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` that
    /// exists is taken.
    pub fn build(self) -> Result<SftpStore> {
        let (host, user, root) = self.checked()?;
        let url = self.shown();
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        let home = std::env::home_dir().map(|h| h.join(".ssh"));
        let key_file = match (self.key_file, &home) {
            (Some(k), _) => k,
            (None, Some(ssh)) => ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|n| ssh.join(n))
                .find(|p| p.exists())
                .ok_or_else(|| {
                    invalid("no ?key=FILE and no ~/.ssh/id_ed25519, id_ecdsa or id_rsa")
                })?,
            (None, None) => return Err(invalid("no ?key=FILE and no home directory")),
        };
        let known_hosts = match (self.known_hosts, &home) {
            (Some(k), _) => k,
            (None, Some(ssh)) => ssh.join("known_hosts"),
            (None, None) => return Err(invalid("no ?known_hosts=FILE and no home directory")),
        };
        let settings = Settings {
            host,
            port: self.port,
            user,
            root,
            key_file,
            known_hosts,
            max_connections: self.max_connections,
            timeout: self.timeout,
        };
        Ok(SftpStore::with_settings(Arc::new(settings)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_settings() {
        let b = SftpBuilder::from_url(
            "sftp://backup%20user@127.0.0.1:2222/srv/my%20backups/?key=/k/id&known_hosts=/k/kh&connections=2&timeout=5",
        )
        .unwrap();
        let store = b.build().unwrap();
        let s = store.settings();
        assert_eq!(s.user, "backup user");
        assert_eq!(s.address(), "127.0.0.1:2222");
        assert_eq!(s.root, "/srv/my backups");
        assert_eq!(s.key_file, PathBuf::from("/k/id"));
        assert_eq!(s.known_hosts, PathBuf::from("/k/kh"));
        assert_eq!(s.max_connections, 2);
        assert_eq!(s.timeout, Duration::from_secs(5));

        let s = SftpBuilder::from_url("sftp://u@[::1]/?key=/k&known_hosts=/h")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(s.settings().address(), "[::1]:22");
        assert_eq!(s.settings().root, "/");
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "sftp://127.0.0.1/x?key=/k",
            "sftp://u@/x",
            "sftp://u@h/x?key=/k&colour=red",
            "sftp://u@h/x?key=/k&connections=0",
            "sftp://u@h/x?key=/k&connections=many",
            "sftp://u@h/x?key=/k&timeout=0",
            "file:///x",
        ] {
            assert!(
                matches!(SftpBuilder::from_url(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
        assert!(SftpBuilder::new().with_user("u").build().is_err());
        assert!(
            SftpBuilder::new()
                .with_host("h")
                .with_user("u")
                .with_root("relative")
                .with_key_file("/k")
                .build()
                .is_err()
        );
    }
}
