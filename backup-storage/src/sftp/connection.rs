//! One SSH connection with its SFTP session: connect, check the host key, authenticate,
//! start the `sftp` subsystem, learn the server's limits and extensions.

use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::protocol::{Packet, StatusCode};
use tokio::sync::Semaphore;

use super::builder::Settings;
use crate::error::{Error, Result};

/// Bytes per read or write request when the server does not announce its limits (the
/// SFTP draft guarantees 32 KiB).
const SAFE_CHUNK: u32 = 32 * 1024;
/// Upper bound on the bytes per request (OpenSSH allows 255 KiB).
const MAX_CHUNK: u32 = 255 * 1024;
/// Open file handles per connection at most (russh-sftp keeps handles as text, so they
/// must stay small numbers on OpenSSH, which hands out the lowest free slot).
const MAX_HANDLES: usize = 64;

/// A live SSH connection and its SFTP session.
pub(crate) struct Connection {
    ssh: Handle<HostKeyCheck>,
    pub(crate) sftp: RawSftpSession,
    /// Bytes per read or write request.
    pub(crate) chunk: u32,
    /// The server renames over an existing file atomically (`posix-rename@openssh.com`).
    pub(crate) posix_rename: bool,
    /// The server flushes a file to its disk on request (`fsync@openssh.com`).
    pub(crate) fsync: bool,
    /// Bounds the handles open at once.
    pub(crate) handles: Arc<Semaphore>,
    broken: AtomicBool,
    in_flight: AtomicUsize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("chunk", &self.chunk)
            .field("posix_rename", &self.posix_rename)
            .field("fsync", &self.fsync)
            .field("in_flight", &self.in_flight())
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl Connection {
    /// Connects, verifies the host key against known_hosts, logs in with the key and opens
    /// the SFTP session, all within the settings' time limit.
    pub(crate) async fn open(settings: &Settings) -> Result<Self> {
        let address = settings.address();
        match tokio::time::timeout(settings.timeout, Self::open_inner(settings)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Ssh {
                host: address,
                source: russh::Error::ConnectionTimeout,
            }),
        }
    }

    async fn open_inner(settings: &Settings) -> Result<Self> {
        let address = settings.address();
        let ssh_error = |source: russh::Error| Error::Ssh {
            host: address.clone(),
            source,
        };
        // A missing known_hosts file would refuse every key; say so plainly.
        if let Err(e) = std::fs::metadata(&settings.known_hosts) {
            return Err(Error::HostKeyRejected {
                host: address,
                reason: format!(
                    "known_hosts file {} cannot be read: {e}",
                    settings.known_hosts.display()
                ),
            });
        }
        let key = russh::keys::load_secret_key(&settings.key_file, None).map_err(|source| {
            Error::Key {
                path: settings.key_file.display().to_string(),
                source,
            }
        })?;
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(30)),
            nodelay: true,
            // Room for the pipelined reads of several transfers (the default is 2 MiB).
            window_size: 16 * 1024 * 1024,
            ..Default::default()
        });
        let verdict = Arc::new(Mutex::new(None));
        let check = HostKeyCheck {
            host: settings.host.clone(),
            port: settings.port,
            known_hosts: settings.known_hosts.clone(),
            verdict: verdict.clone(),
        };
        let mut ssh =
            match client::connect(config, (settings.host.as_str(), settings.port), check).await {
                Ok(ssh) => ssh,
                Err(e) => {
                    let refused = verdict.lock().ok().and_then(|mut v| v.take());
                    return Err(match refused {
                        Some(reason) => Error::HostKeyRejected {
                            host: address,
                            reason,
                        },
                        None => ssh_error(e),
                    });
                }
            };
        let hash = if key.algorithm().is_rsa() {
            ssh.best_supported_rsa_hash()
                .await
                .map_err(ssh_error)?
                .flatten()
        } else {
            None
        };
        let auth = ssh
            .authenticate_publickey(
                settings.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(ssh_error)?;
        if !auth.success() {
            return Err(Error::AuthRejected {
                user: settings.user.clone(),
                host: address,
                key_file: settings.key_file.display().to_string(),
            });
        }
        let channel = ssh.channel_open_session().await.map_err(ssh_error)?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(ssh_error)?;
        let config = russh_sftp::client::Config {
            request_timeout_secs: settings.timeout.as_secs().max(1),
            ..Default::default()
        };
        let mut sftp = RawSftpSession::new_with_config(channel.into_stream(), config);
        let sftp_error = |source: SftpError| Error::Sftp {
            op: "init",
            path: address.clone(),
            source,
        };
        let version = sftp.init().await.map_err(sftp_error)?;
        let has = |name: &str| version.extensions.get(name).is_some_and(|v| v == "1");
        let mut chunk = SAFE_CHUNK;
        let mut handles = MAX_HANDLES;
        if has("limits@openssh.com") {
            let limits = Limits::from(sftp.limits().await.map_err(sftp_error)?);
            sftp.set_limits(limits);
            let read = limits.read_len.unwrap_or(u64::from(SAFE_CHUNK));
            let write = limits.write_len.unwrap_or(u64::from(SAFE_CHUNK));
            chunk = read.min(write).min(u64::from(MAX_CHUNK)).max(1024) as u32;
            if let Some(open) = limits.open_handles {
                // Leave room for directory handles of listings.
                handles = handles.min((open / 2).max(1) as usize);
            }
        }
        Ok(Self {
            ssh,
            sftp,
            chunk,
            posix_rename: has("posix-rename@openssh.com"),
            fsync: has("fsync@openssh.com"),
            handles: Arc::new(Semaphore::new(handles)),
            broken: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Whether the connection can no longer serve requests.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed) || self.ssh.is_closed()
    }

    /// Takes the connection out of service after a transport failure (it closes when the
    /// last user lets go).
    pub(crate) fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// Operations using the connection now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Renames over an existing file atomically (`posix-rename@openssh.com`).
    pub(crate) async fn posix_rename(&self, from: &str, to: &str) -> Result<(), SftpError> {
        let mut data = Vec::with_capacity(8 + from.len() + to.len());
        for s in [from, to] {
            let len = u32::try_from(s.len())
                .map_err(|_| SftpError::UnexpectedBehavior("path too long".into()))?;
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        match self.sftp.extended("posix-rename@openssh.com", data).await? {
            Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(s) => Err(SftpError::Status(s)),
            _ => Err(SftpError::UnexpectedPacket),
        }
    }
}

/// Whether an SFTP failure means the connection itself is gone or stuck.
pub(crate) fn is_transport_failure(e: &SftpError) -> bool {
    match e {
        SftpError::IO(_) | SftpError::Timeout | SftpError::UnexpectedBehavior(_) => true,
        SftpError::Status(s) => matches!(
            s.status_code,
            StatusCode::NoConnection | StatusCode::ConnectionLost
        ),
        SftpError::Limited(_) | SftpError::UnexpectedPacket => false,
    }
}

/// Accepts the server only if its host key is recorded for it in the known_hosts file;
/// records why otherwise.
struct HostKeyCheck {
    host: String,
    port: u16,
    known_hosts: std::path::PathBuf,
    verdict: Arc<Mutex<Option<String>>>,
}

impl HostKeyCheck {
    fn refuse(&self, reason: String) -> Result<bool, russh::Error> {
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(reason);
        }
        Ok(false)
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return self.refuse("host certificates are not supported".into());
            }
        };
        let file = self.known_hosts.display().to_string();
        let offered = format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256));
        match russh::keys::check_known_hosts_path(
            &self.host,
            self.port,
            key,
            FsPath::new(&self.known_hosts),
        ) {
            Ok(true) => Ok(true),
            Ok(false) => self.refuse(format!(
                "{file} has no {} key for this host (the server offered {offered})",
                key.algorithm()
            )),
            Err(russh::keys::Error::KeyChanged { line }) => self.refuse(format!(
                "the server offered {offered}, which differs from line {line} of {file} \
                 (changed host key or man in the middle)"
            )),
            Err(e) => self.refuse(format!("cannot check {file}: {e}")),
        }
    }
}
