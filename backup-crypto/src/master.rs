//! The server master key: 32 random bytes that wrap every server-held account secret.
//!
//! Text form (one line, whitespace and case ignored when parsing):
//! `bkup-master-v1:<64 hex digits>:<8 hex digit checksum>`.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use backup_core::model::AccountId;
use rand::Rng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::text::{KeyText, checksum, decode_hex, encode_hex, encode_hex_secret};

const TAG: &str = "bkup-master";
const WHAT: &str = "master key";
/// Key files larger than this are not master keys (and are not read whole).
const MAX_FILE_LEN: u64 = 4096;
const WRAP_CONTEXT: &str = "backup-crypto 2026-01 key envelope v1 wrapping key";
const FINGERPRINT_CONTEXT: &str = "backup-crypto 2026-01 master key fingerprint v1";
const RECORD_CONTEXT: &str = "backup-engine 2026 account record key";

/// The server master key. It wraps every account's server-held secrets (see
/// [`crate::AccountKeys::to_envelope`]) and is what disaster recovery needs.
///
/// Not `Clone`/`Copy`; `Debug` is redacted; zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; 32],
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self { bytes }
    }

    /// Wraps existing key bytes (from a KMS, for example).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self { bytes }
    }

    /// The one-line text form `bkup-master-v1:<hex>:<checksum>`, for export and backup.
    /// The returned string is wiped when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        let hex = encode_hex_secret(&self.bytes);
        let mut body = Zeroizing::new(String::with_capacity(TAG.len() + 4 + 64));
        body.push_str(TAG);
        body.push_str("-v1:");
        body.push_str(&hex);
        let sum = checksum(&body);
        let mut text = Zeroizing::new(String::with_capacity(body.len() + 9));
        text.push_str(&body);
        text.push(':');
        text.push_str(&sum);
        text
    }

    /// Parses the text form. Whitespace anywhere and letter case are ignored; a typo is
    /// caught by the checksum. Errors never contain the text.
    pub fn from_text(text: &str) -> Result<Self> {
        let parsed = KeyText::parse(WHAT, TAG, 1, text)?;
        let bytes = decode_hex::<32>(parsed.field(0))
            .map_err(|r| Error::malformed(WHAT, format!("the key part {r}")))?;
        parsed.verify_checksum(WHAT)?;
        Ok(Self { bytes: *bytes })
    }

    /// Reads a key file written by [`MasterKey::save_new`] (or any file holding the text form).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with_metadata(path.as_ref()).map(|(key, _)| key)
    }

    /// [`MasterKey::load`], also returning the metadata of the file read (taken from the
    /// open file, so it describes the bytes read even if the name is replaced meanwhile).
    pub(crate) fn load_with_metadata(path: &Path) -> Result<(Self, fs::Metadata)> {
        let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
        let len = metadata.len();
        if len > MAX_FILE_LEN {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "{}: {len} bytes is too large for a master key file",
                    path.display()
                ),
            ));
        }
        let mut text = Zeroizing::new(String::with_capacity(MAX_FILE_LEN as usize + 64));
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE_LEN), &mut text)
            .map_err(|e| Error::io(path, e))?;
        let key = Self::from_text(&text).map_err(|e| match e {
            Error::Malformed { what, reason } => {
                Error::malformed(what, format!("{}: {reason}", path.display()))
            }
            e => e,
        })?;
        Ok((key, metadata))
    }

    /// Loads the key at `path`, or, if there is no file, generates one and saves it with
    /// [`MasterKey::save_new`]. Returns the key and whether it was created. An existing file
    /// is never overwritten (a malformed one is an error, not replaced); when two processes
    /// race, both end up with the key that reached the disk.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<(Self, bool)> {
        let path = path.as_ref();
        match Self::load(path) {
            Ok(key) => Ok((key, false)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                match key.save_new(path) {
                    Ok(()) => Ok((key, true)),
                    Err(Error::MasterKeyExists { .. }) => Ok((Self::load(path)?, false)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the text form to a new file at `path`, readable by the owner only (mode 0600
    /// on Unix, whatever the process umask), refusing to overwrite an existing file
    /// ([`Error::MasterKeyExists`]).
    ///
    /// The file appears atomically with its full contents: it is written and synced under a
    /// temporary name in the same directory, then hard-linked into place (which fails if the
    /// name exists). Where hard links are not supported it is created in place with
    /// `O_EXCL` instead.
    pub fn save_new(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let name = path.file_name().ok_or_else(|| {
            Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
            )
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut suffix = [0u8; 8];
        rand::rng().fill_bytes(&mut suffix);
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            encode_hex(&suffix)
        ));
        self.write_exclusive(&tmp)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::MasterKeyExists { path: path.into() });
            }
            Err(_) => self.write_exclusive(path)?,
        }
        sync_dir(&dir);
        Ok(())
    }

    /// A short public fingerprint (16 hex digits) telling keys apart without revealing them,
    /// for logs and for checking that two copies hold the same key.
    pub fn fingerprint(&self) -> String {
        encode_hex(&self.fingerprint_bytes())
    }

    /// The fingerprint as bytes (what [`MasterKey::fingerprint`] shows in hex).
    pub(crate) fn fingerprint_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&blake3::derive_key(FINGERPRINT_CONTEXT, &self.bytes)[..8]);
        out
    }

    /// The key that seals `account`'s records: BLAKE3 `derive_key` over the master key
    /// followed by the account id.
    pub(crate) fn record_key(&self, account: AccountId) -> Zeroizing<[u8; 32]> {
        let mut material = Zeroizing::new([0u8; 48]);
        material[..32].copy_from_slice(&self.bytes);
        material[32..].copy_from_slice(account.as_bytes());
        Zeroizing::new(blake3::derive_key(RECORD_CONTEXT, &*material))
    }

    /// The key that wraps account key envelopes.
    pub(crate) fn wrapping_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(WRAP_CONTEXT, &self.bytes))
    }

    /// Creates `path` exclusively (mode 0600), writes the text form and syncs it. On failure
    /// the partial file is removed.
    ///
    /// The mode given to `open` only ever loses bits to the umask; it is set again on the
    /// open file, so the key file is 0600 whatever the umask.
    fn write_exclusive(&self, path: &Path) -> Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::MasterKeyExists { path: path.into() },
            _ => Error::io(path, e),
        })?;
        let mut line = self.to_text();
        line.push('\n');
        let written = owner_only(&file)
            .and_then(|()| file.write_all(line.as_bytes()))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(Error::io(path, e));
        }
        Ok(())
    }
}

/// Sets mode 0600 on an open file (Unix; elsewhere nothing to do).
fn owner_only(file: &fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// Best effort: makes a new directory entry durable (not supported everywhere).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_typos() {
        let k = MasterKey::generate();
        let text = k.to_text();
        assert!(text.starts_with("bkup-master-v1:"));
        assert_eq!(text.len(), "bkup-master-v1:".len() + 64 + 9);
        let back = MasterKey::from_text(&text).unwrap();
        assert_eq!(back.bytes, k.bytes);
        assert_eq!(back.fingerprint(), k.fingerprint());

        // Wrapped over lines, upper case: still the same key.
        let wrapped = format!("  {}\n{}  \n", &text[..30], text[30..].to_uppercase());
        assert_eq!(MasterKey::from_text(&wrapped).unwrap().bytes, k.bytes);

        // One hex digit changed: the checksum catches it, the message does not echo the key.
        let hex = &text["bkup-master-v1:".len()..][..64];
        let mut typo = text.to_string();
        let i = "bkup-master-v1:".len() + 10;
        let c = if &typo[i..=i] == "0" { "1" } else { "0" };
        typo.replace_range(i..=i, c);
        let e = MasterKey::from_text(&typo).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("mistyped"), "{msg}");
        assert!(!msg.contains(hex) && !msg.contains(&typo[15..40]), "{msg}");

        // A missing digit is reported as a length error.
        let mut short = text.to_string();
        short.remove(20);
        let msg = MasterKey::from_text(&short).unwrap_err().to_string();
        assert!(msg.contains("63 characters"), "{msg}");
    }

    #[test]
    fn debug_is_redacted() {
        let k = MasterKey::from_bytes([0xab; 32]);
        let dbg = format!("{k:?} {k:#?}");
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
        assert!(!dbg.contains("abab"), "{dbg}");
    }

    #[test]
    fn wrapping_key_and_fingerprint_are_derived() {
        let k = MasterKey::from_bytes([7; 32]);
        assert_ne!(*k.wrapping_key(), [7; 32]);
        assert_eq!(k.fingerprint().len(), 16);
        assert_ne!(
            k.fingerprint(),
            MasterKey::from_bytes([8; 32]).fingerprint()
        );
    }
}
