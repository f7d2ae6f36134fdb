//! Owner key text: export, parsing, typos, another account's key.

use backup_core::ErrorKind;
use backup_core::model::{AccountId, EncryptionMode, OwnerKey};
use backup_crypto::{AccountKeys, Error, owner_key_account};

fn owner_account() -> (AccountKeys, OwnerKey) {
    let (keys, owner) = AccountKeys::generate(AccountId::new(), EncryptionMode::OwnerKey).unwrap();
    (keys, owner.unwrap())
}

/// The secret hex (third part) of an owner key text.
fn secret_hex(key: &OwnerKey) -> String {
    key.expose().split(':').nth(2).unwrap().to_owned()
}

#[test]
fn format_names_the_account() {
    let (keys, owner) = owner_account();
    let text = owner.expose();
    let parts: Vec<&str> = text.split(':').collect();
    assert_eq!(parts.len(), 4, "{parts:?}");
    assert_eq!(parts[0], "bkup-owner-key-v1");
    assert_eq!(parts[1], keys.account().to_string());
    assert_eq!(parts[2].len(), 64);
    assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(parts[3].len(), 8);
    assert!(!text.contains(char::is_whitespace));
    assert_eq!(owner_key_account(&owner).unwrap(), keys.account());
    keys.verify_owner_key(&owner).unwrap();
}

#[test]
fn another_accounts_key_is_wrong_key_naming_that_account() {
    let (alice, _) = owner_account();
    let (bob, bob_key) = owner_account();
    let e = alice.opener(Some(&bob_key)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::WrongKey { .. }), "{msg}");
    assert!(msg.contains(&bob.account().to_string()), "{msg}");
    assert!(msg.contains(&alice.account().to_string()), "{msg}");
    assert!(!msg.contains(&secret_hex(&bob_key)[..16]), "{msg}");
    assert!(matches!(
        backup_core::Error::from(e),
        backup_core::Error::WrongKey { .. }
    ));
}

#[test]
fn a_key_from_before_a_reset_is_wrong_key() {
    let (old, old_key) = owner_account();
    let (new, _) = AccountKeys::generate(old.account(), EncryptionMode::OwnerKey).unwrap();
    let e = new.verify_owner_key(&old_key).unwrap_err();
    assert!(matches!(e, Error::WrongKey { .. }), "{e}");
    assert!(e.to_string().contains("not its current key"), "{e}");
}

#[test]
fn typos_are_caught_with_a_clear_message() {
    let (keys, owner) = owner_account();
    let text = owner.expose().to_owned();
    let secret = secret_hex(&owner);
    let start = text.find(&secret).unwrap();
    // Every single-digit change in the secret is caught by the checksum.
    for i in start..start + 64 {
        let mut typo = text.clone();
        let c = if &typo[i..=i] == "7" { "8" } else { "7" };
        typo.replace_range(i..=i, c);
        let e = keys.opener(Some(&OwnerKey::new(typo))).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("mistyped"), "position {i}: {msg}");
        assert!(!msg.contains(&secret[..16]), "{msg}");
        assert_eq!(backup_core::Error::from(e).kind(), ErrorKind::InvalidInput);
    }
    // Two swapped neighbours.
    let mut swapped: Vec<char> = text.chars().collect();
    let i = (start..start + 63)
        .find(|&i| swapped[i] != swapped[i + 1])
        .unwrap();
    swapped.swap(i, i + 1);
    let swapped: String = swapped.into_iter().collect();
    let e = keys.verify_owner_key(&OwnerKey::new(swapped)).unwrap_err();
    assert!(e.to_string().contains("mistyped"), "{e}");

    // A dropped digit, a stray character, a truncated paste, something else entirely.
    let mut stray = text.clone();
    stray.replace_range(start..=start, "q");
    let cases = [
        (text.replacen(&secret, &secret[1..], 1), "63 characters"),
        (stray, "character 1 is not a hex digit"),
        (text[..text.len() - 9].to_owned(), "parts"),
        (
            "hello".to_owned(),
            "does not start with `bkup-owner-key-v1:`",
        ),
        (String::new(), "empty"),
        (text.replacen("-v1:", "-v7:", 1), "version 7"),
    ];
    for (bad, expected) in cases {
        let e = keys.verify_owner_key(&OwnerKey::new(bad)).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                Error::Malformed {
                    what: "owner key",
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains(expected), "expected {expected:?} in {msg}");
    }
}

#[test]
fn whitespace_and_case_are_ignored() {
    let (keys, owner) = owner_account();
    let text = owner.expose();
    let mut wrapped = String::from("\n   ");
    for (i, c) in text.chars().enumerate() {
        if i > 0 && i % 16 == 0 {
            wrapped.push_str("\n\t ");
        }
        wrapped.push(c.to_ascii_uppercase());
    }
    wrapped.push_str("  \r\n");
    let opener = keys.opener(Some(&OwnerKey::new(wrapped))).unwrap();
    let session = keys.sealer().begin().unwrap();
    let mut blob = b"wrapped".to_vec();
    session.seal(b"", &mut blob).unwrap();
    opener
        .open_session(session.header())
        .unwrap()
        .open(b"", &mut blob)
        .unwrap();
    assert_eq!(blob, b"wrapped");
}

#[test]
fn owner_keys_are_ignored_where_the_server_holds_the_key() {
    let (_, stray) = owner_account();
    for mode in [EncryptionMode::None, EncryptionMode::ServerKey] {
        let (keys, owner) = AccountKeys::generate(AccountId::new(), mode).unwrap();
        assert!(owner.is_none());
        keys.opener(Some(&stray)).unwrap();
        keys.opener(None).unwrap();
    }
}

#[test]
fn a_master_key_is_not_an_owner_key() {
    let (keys, _) = owner_account();
    let master = backup_crypto::MasterKey::generate();
    let e = keys
        .verify_owner_key(&OwnerKey::new(master.to_text().as_str()))
        .unwrap_err();
    assert!(e.to_string().contains("this is a master key"), "{e}");
}
