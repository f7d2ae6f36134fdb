//! Key envelopes: round trips, wrong master key, other account, tampering.

use backup_core::ErrorKind;
use backup_core::model::{AccountId, EncryptionMode};
use backup_crypto::{AccountKeys, Error, MasterKey};

const MODES: [EncryptionMode; 3] = [
    EncryptionMode::None,
    EncryptionMode::ServerKey,
    EncryptionMode::OwnerKey,
];

fn core_kind(e: Error) -> ErrorKind {
    backup_core::Error::from(e).kind()
}

#[test]
fn round_trip_with_the_right_master_key() {
    let master = MasterKey::generate();
    for mode in MODES {
        let (keys, owner) = AccountKeys::generate(AccountId::new(), mode).unwrap();
        let env = keys.to_envelope(&master).unwrap();
        let back = AccountKeys::from_envelope(&master, keys.account(), &env).unwrap();
        assert_eq!(back.account(), keys.account());
        assert_eq!(back.mode(), mode);
        assert_eq!(back.public_key_bytes(), keys.public_key_bytes());
        assert_eq!(back.public_key_bytes().is_some(), mode.is_encrypted());
        assert_eq!(back.key_id(), keys.key_id());

        // Re-writing gives new bytes (fresh nonce) but the same key id.
        let again = back.to_envelope(&master).unwrap();
        assert_ne!(again, env);
        assert_eq!(
            AccountKeys::from_envelope(&master, keys.account(), &again)
                .unwrap()
                .key_id(),
            keys.key_id()
        );

        // Content sealed before the round trip opens after it.
        let session = keys.sealer().begin().unwrap();
        let mut blob = b"content".to_vec();
        session.seal(b"", &mut blob).unwrap();
        let opener = back.opener(owner.as_ref()).unwrap();
        opener
            .open_session(session.header())
            .unwrap()
            .open(b"", &mut blob)
            .unwrap();
        assert_eq!(blob, b"content");
    }
}

#[test]
fn owner_key_envelopes_hold_no_secret() {
    let master = MasterKey::generate();
    let (keys, _owner) = AccountKeys::generate(AccountId::new(), EncryptionMode::OwnerKey).unwrap();
    let back =
        AccountKeys::from_envelope(&master, keys.account(), &keys.to_envelope(&master).unwrap())
            .unwrap();
    assert!(matches!(back.opener(None), Err(Error::KeyRequired { .. })));
    // Server-key envelopes do: the server opens without the owner.
    let (keys, owner) = AccountKeys::generate(AccountId::new(), EncryptionMode::ServerKey).unwrap();
    assert!(owner.is_none());
    let back =
        AccountKeys::from_envelope(&master, keys.account(), &keys.to_envelope(&master).unwrap())
            .unwrap();
    back.opener(None).unwrap();
}

#[test]
fn wrong_master_key_is_an_integrity_error() {
    let (keys, _) = AccountKeys::generate(AccountId::new(), EncryptionMode::ServerKey).unwrap();
    let env = keys.to_envelope(&MasterKey::generate()).unwrap();
    let e = AccountKeys::from_envelope(&MasterKey::generate(), keys.account(), &env).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
    assert!(e.to_string().contains("master key may be wrong"), "{e}");
    assert_eq!(core_kind(e), ErrorKind::Integrity);
}

#[test]
fn envelope_of_another_account_is_wrong_key() {
    let master = MasterKey::generate();
    for mode in MODES {
        let (keys, _) = AccountKeys::generate(AccountId::new(), mode).unwrap();
        let env = keys.to_envelope(&master).unwrap();
        let other = AccountId::new();
        let e = AccountKeys::from_envelope(&master, other, &env).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::WrongKey { .. }), "{msg}");
        assert!(msg.contains(&keys.account().to_string()), "{msg}");
        assert!(msg.contains(&other.to_string()), "{msg}");
        assert!(matches!(
            backup_core::Error::from(e),
            backup_core::Error::WrongKey { .. }
        ));
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let master = MasterKey::generate();
    for mode in MODES {
        let (keys, _) = AccountKeys::generate(AccountId::new(), mode).unwrap();
        let env = keys.to_envelope(&master).unwrap();
        for i in 0..env.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = env.clone();
                bad[i] ^= bit;
                match AccountKeys::from_envelope(&master, keys.account(), &bad) {
                    Ok(_) => panic!("{mode:?}: flipped byte {i} accepted"),
                    // Every flip, the account id bytes included, is an integrity failure
                    // (authentication comes before the account check).
                    Err(e) => assert_eq!(core_kind(e), ErrorKind::Integrity, "{mode:?} byte {i}"),
                }
            }
        }
    }
}

#[test]
fn truncated_extended_and_foreign_bytes_are_rejected() {
    let master = MasterKey::generate();
    let (keys, _) = AccountKeys::generate(AccountId::new(), EncryptionMode::OwnerKey).unwrap();
    let env = keys.to_envelope(&master).unwrap();
    for len in 0..env.len() {
        let e = AccountKeys::from_envelope(&master, keys.account(), &env[..len]).unwrap_err();
        assert_eq!(core_kind(e), ErrorKind::Integrity, "length {len}");
    }
    let mut longer = env.clone();
    longer.push(0);
    assert!(AccountKeys::from_envelope(&master, keys.account(), &longer).is_err());
    let e = AccountKeys::from_envelope(&master, keys.account(), b"{\"not\": \"an envelope\"}")
        .unwrap_err();
    assert!(e.to_string().contains("not a key envelope"), "{e}");
}

#[test]
fn unknown_versions_are_reported_as_such() {
    let master = MasterKey::generate();
    let (keys, _) = AccountKeys::generate(AccountId::new(), EncryptionMode::None).unwrap();
    let mut env = keys.to_envelope(&master).unwrap();
    env[8] = 2;
    match AccountKeys::from_envelope(&master, keys.account(), &env).unwrap_err() {
        Error::UnsupportedVersion { version, .. } => assert_eq!(version, 2),
        e => panic!("expected UnsupportedVersion, got {e}"),
    }
}
