//! The crate's error type and its mapping onto [`backup_core::Error`].
//!
//! Messages never contain key material: parsers describe what is wrong with a key text
//! without echoing it.

use std::path::PathBuf;

use backup_core::model::AccountId;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in backup-crypto's own functions.
///
/// Converts into [`backup_core::Error`] with `?` (see the `From` impl for the mapping).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A master key file exists already; it is never overwritten.
    #[error("{} already exists: refusing to overwrite a master key", path.display())]
    MasterKeyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A key given as text (master key, owner key) does not parse or fails its checksum.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which kind of key text (`master key`, `owner key`).
        what: &'static str,
        /// What is wrong (never the text itself).
        reason: String,
    },
    /// Stored bytes (a key envelope) do not authenticate or are malformed.
    #[error("integrity check failed for {object}: {reason}")]
    Integrity {
        /// What failed (e.g. `key envelope of account …`).
        object: String,
        /// What did not hold.
        reason: String,
    },
    /// Stored bytes were written by an unknown (newer) format version.
    #[error("{object} has unsupported format version {version}")]
    UnsupportedVersion {
        /// What was read.
        object: String,
        /// The version found.
        version: u16,
    },
    /// The account uses an owner-held key and none was given.
    #[error(
        "account {account} uses an owner-held key: the owner's private key is needed to read its snapshots"
    )]
    KeyRequired {
        /// The account.
        account: AccountId,
    },
    /// A key was given but belongs to another account or does not match.
    #[error("wrong key: {reason}")]
    WrongKey {
        /// Why it was refused.
        reason: String,
    },
    /// A cryptographic operation failed for a reason other than integrity.
    #[error("crypto: {reason}")]
    Crypto {
        /// What failed.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn integrity(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Integrity {
            object: object.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn wrong_key(reason: impl Into<String>) -> Self {
        Error::WrongKey {
            reason: reason.into(),
        }
    }

    pub(crate) fn crypto(reason: impl Into<String>) -> Self {
        Error::Crypto {
            reason: reason.into(),
        }
    }
}

/// Maps onto core's variants: `Io` → `Io`, `MasterKeyExists` → `AlreadyExists`,
/// `Malformed` → `Invalid`, `Integrity` → `Integrity`, `UnsupportedVersion` →
/// `UnsupportedVersion`, `KeyRequired` → `KeyRequired`, `WrongKey` → `WrongKey`,
/// `Crypto` → `Crypto`.
impl From<Error> for backup_core::Error {
    fn from(e: Error) -> Self {
        use backup_core::Error as Core;
        match e {
            Error::Io { path, source } => Core::Io { path, source },
            Error::MasterKeyExists { path } => Core::AlreadyExists {
                what: format!("master key file {}", path.display()),
            },
            Error::Malformed { what, reason } => Core::Invalid {
                field: what,
                reason,
            },
            Error::Integrity { object, reason } => Core::Integrity { object, reason },
            Error::UnsupportedVersion { object, version } => {
                Core::UnsupportedVersion { object, version }
            }
            Error::KeyRequired { account } => Core::KeyRequired {
                account: account.to_string(),
            },
            Error::WrongKey { reason } => Core::WrongKey { reason },
            Error::Crypto { reason } => Core::Crypto { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::ErrorKind;

    #[test]
    fn maps_onto_core_kinds() {
        let account = AccountId::new();
        let cases = [
            (
                Error::io("/x", std::io::Error::other("boom")),
                ErrorKind::Io,
            ),
            (
                Error::MasterKeyExists { path: "/x".into() },
                ErrorKind::AlreadyExists,
            ),
            (
                Error::malformed("owner key", "bad"),
                ErrorKind::InvalidInput,
            ),
            (Error::integrity("x", "bad"), ErrorKind::Integrity),
            (
                Error::UnsupportedVersion {
                    object: "x".into(),
                    version: 9,
                },
                ErrorKind::Integrity,
            ),
            (Error::KeyRequired { account }, ErrorKind::Key),
            (Error::wrong_key("other"), ErrorKind::Key),
            (Error::crypto("rng"), ErrorKind::Key),
        ];
        for (e, kind) in cases {
            let msg = e.to_string();
            let core: backup_core::Error = e.into();
            assert_eq!(core.kind(), kind, "{msg}");
        }
        let core: backup_core::Error = Error::KeyRequired { account }.into();
        assert!(
            matches!(core, backup_core::Error::KeyRequired { account: a } if a == account.to_string())
        );
    }
}
