//! The owner key text: an owner-held account's X25519 secret, handed out once.
//!
//! Format (one line; whitespace and case ignored when parsing):
//! `bkup-owner-key-v1:<account uuid, hyphenated>:<64 hex digits of the secret>:<8 hex checksum>`
//! where the checksum is the first 4 bytes of BLAKE3 over everything before the last `:`.
//! Naming the account lets a restore refuse another account's key with a clear message.

use std::str::FromStr;

use backup_core::model::{AccountId, OwnerKey};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::text::{KeyText, checksum, decode_hex, encode_hex_secret};

const TAG: &str = "bkup-owner-key";
const WHAT: &str = "owner key";

/// Exports `secret` of `account` as owner key text.
pub(crate) fn export(account: AccountId, secret: &StaticSecret) -> OwnerKey {
    let hex = encode_hex_secret(secret.as_bytes());
    let account = account.to_string();
    let mut body = Zeroizing::new(String::with_capacity(TAG.len() + 4 + account.len() + 65));
    body.push_str(TAG);
    body.push_str("-v1:");
    body.push_str(&account);
    body.push(':');
    body.push_str(&hex);
    let sum = checksum(&body);
    let mut text = String::with_capacity(body.len() + 9);
    text.push_str(&body);
    text.push(':');
    text.push_str(&sum);
    // `OwnerKey::new` wipes the string it is given.
    OwnerKey::new(text)
}

/// Parses owner key text into the account it names and its secret.
pub(crate) fn parse(key: &OwnerKey) -> Result<(AccountId, StaticSecret)> {
    let parsed = KeyText::parse(WHAT, TAG, 2, key.expose())?;
    let account = AccountId::from_str(parsed.field(0)).map_err(|_| {
        Error::malformed(
            WHAT,
            "the account part (second part) is not a UUID: the text was mistyped or damaged",
        )
    })?;
    let secret = decode_hex::<32>(parsed.field(1))
        .map_err(|r| Error::malformed(WHAT, format!("the secret part (third part) {r}")))?;
    parsed.verify_checksum(WHAT)?;
    Ok((account, StaticSecret::from(*secret)))
}

/// The account an owner key belongs to. Checks the key's format and checksum (catching
/// typos before a restore starts) but not whether it is the account's current key: that
/// takes the account's keys ([`crate::AccountKeys::verify_owner_key`]).
pub fn owner_key_account(key: &OwnerKey) -> Result<AccountId> {
    parse(key).map(|(account, _)| account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_parse_round_trip() {
        let account = AccountId::new();
        let secret = StaticSecret::from([0x5a; 32]);
        let key = export(account, &secret);
        let text = key.expose();
        assert!(text.starts_with(&format!("bkup-owner-key-v1:{account}:{}", "5a".repeat(32))));
        assert_eq!(text.rsplit(':').next().unwrap().len(), 8);
        let (a, s) = parse(&key).unwrap();
        assert_eq!(a, account);
        assert_eq!(s.as_bytes(), secret.as_bytes());
        assert_eq!(owner_key_account(&key).unwrap(), account);
    }

    #[test]
    fn errors_name_the_part_without_echoing_the_secret() {
        let account = AccountId::new();
        let key = export(account, &StaticSecret::from([0x5a; 32]));
        let text = key.expose().to_owned();
        let secret_hex = "5a".repeat(32);

        let bad_uuid = text.replacen(&account.to_string()[..4], "zzzz", 1);
        let e = parse(&OwnerKey::new(bad_uuid)).err().unwrap().to_string();
        assert!(e.contains("account part"), "{e}");

        let bad_hex = text.replacen("5a5a", "5g5a", 1);
        let e = parse(&OwnerKey::new(bad_hex)).err().unwrap().to_string();
        assert!(
            e.contains("secret part") && e.contains("character 2"),
            "{e}"
        );
        assert!(!e.contains(&secret_hex[4..20]), "{e}");

        let typo = text.replacen("5a5a", "5a5b", 1);
        let e = parse(&OwnerKey::new(typo)).err().unwrap();
        assert!(matches!(
            e,
            Error::Malformed {
                what: "owner key",
                ..
            }
        ));
        assert!(e.to_string().contains("mistyped"), "{e}");

        let master = crate::MasterKey::generate();
        let e = parse(&OwnerKey::new(master.to_text().as_str()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("this is a master key"), "{e}");
    }
}
