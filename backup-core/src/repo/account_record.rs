//! The account record: the account's settings as JSON, MAC-authenticated, stored at
//! `accounts/<uuid>/account` so that a catalog can be rebuilt from a destination alone.
//!
//! ```text
//! "BKUPACCT" | version u16 | JSON of the Account | MAC [32] (account domain) of all before
//! ```
//! The record holds settings (username, e-mail, encryption mode, excludes, quotas), never
//! file names or keys.

use super::format::{ByteReader, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::model::Account;
use crate::ports::{MacDomain, ServerKeys};

/// Magic of an account record.
pub const ACCOUNT_MAGIC: &[u8; 8] = b"BKUPACCT";

/// Encodes an account record.
pub fn encode_account(keys: &ServerKeys, account: &Account) -> Result<Vec<u8>> {
    let mut out = ACCOUNT_MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    serde_json::to_writer(&mut out, account).map_err(|e| Error::Internal {
        reason: format!("encoding the account record: {e}"),
    })?;
    let mac = keys.mac(MacDomain::Account, &out);
    out.extend_from_slice(&mac);
    Ok(out)
}

/// Parses and authenticates an account record; it must name `expected` when given.
pub fn decode_account(keys: &ServerKeys, bytes: &[u8]) -> Result<Account> {
    let object = "account record";
    if bytes.len() < 10 + 32 {
        return Err(Error::integrity(object, "truncated"));
    }
    let (body, tag) = bytes.split_at(bytes.len() - 32);
    let mut t = [0u8; 32];
    t.copy_from_slice(tag);
    if !keys.verify_mac(MacDomain::Account, body, &t) {
        return Err(Error::integrity(
            object,
            "does not authenticate (tampered, or from another account)",
        ));
    }
    let mut r = ByteReader::new(body, object);
    r.magic_and_version(ACCOUNT_MAGIC)?;
    let json = r.bytes(r.remaining())?;
    serde_json::from_slice(json).map_err(|e| Error::integrity(object, format!("malformed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_tamper() {
        let keys = ServerKeys::new([1; 32], [2; 32], 3);
        let a = Account::new("zed").unwrap();
        let bytes = encode_account(&keys, &a).unwrap();
        assert_eq!(decode_account(&keys, &bytes).unwrap(), a);
        let mut bad = bytes.clone();
        bad[15] ^= 1;
        assert!(decode_account(&keys, &bad).is_err());
        let other = ServerKeys::new([1; 32], [9; 32], 3);
        assert!(decode_account(&other, &bytes).is_err());
        assert!(decode_account(&keys, &bytes[..20]).is_err());
    }
}
