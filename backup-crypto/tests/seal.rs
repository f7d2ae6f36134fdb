//! Sealing and opening content through core's ports.

use std::sync::Arc;

use backup_core::model::{AccountId, EncryptionMode, OwnerKey};
use backup_core::ports::{ContentOpener, ContentSealer, MacDomain};
use backup_core::{Error as CoreError, ErrorKind};
use backup_crypto::{AccountKeys, Error, MasterKey};
use proptest::prelude::*;

/// Keys of a fresh account in `mode`, plus the opener its reader would hold.
fn account(mode: EncryptionMode) -> (AccountKeys, Arc<dyn ContentOpener>, Option<OwnerKey>) {
    let (keys, owner) = AccountKeys::generate(AccountId::new(), mode).unwrap();
    let opener = keys.opener(owner.as_ref()).unwrap();
    (keys, opener, owner)
}

/// Seals `data` in a new session; returns (header, sealed blob).
fn seal(sealer: &dyn ContentSealer, aad: &[u8], data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let session = sealer.begin().unwrap();
    let mut buf = data.to_vec();
    session.seal(aad, &mut buf).unwrap();
    (session.header().to_vec(), buf)
}

fn open(
    opener: &dyn ContentOpener,
    header: &[u8],
    aad: &[u8],
    blob: &[u8],
) -> backup_core::Result<Vec<u8>> {
    let session = opener.open_session(header)?;
    let mut buf = blob.to_vec();
    match session.open(aad, &mut buf) {
        Ok(()) => Ok(buf),
        Err(e) => {
            assert!(
                buf.is_empty(),
                "a failed open left {} bytes in the buffer",
                buf.len()
            );
            Err(e)
        }
    }
}

fn assert_integrity(r: backup_core::Result<Vec<u8>>, what: &str) {
    match r {
        Err(e @ CoreError::Integrity { .. }) => drop(e),
        Err(e) => panic!("{what}: expected an integrity error, got {e}"),
        Ok(_) => panic!("{what}: opened"),
    }
}

/// Bytes a sealed blob has beyond its plaintext: nonce and tag of the header's scheme
/// (1: XChaCha20-Poly1305, 24 + 16; 2: AES-256-GCM, 12 + 16).
fn overhead(header: &[u8]) -> usize {
    match header[0] {
        1 => 40,
        2 => 28,
        s => panic!("unexpected scheme {s}"),
    }
}

const ENCRYPTED: [EncryptionMode; 2] = [EncryptionMode::ServerKey, EncryptionMode::OwnerKey];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip_server_key(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (keys, opener, _) = account(EncryptionMode::ServerKey);
        let (header, blob) = seal(&*keys.sealer(), &aad, &data);
        prop_assert_eq!(blob.len(), data.len() + overhead(&header));
        prop_assert_eq!(open(&*opener, &header, &aad, &blob).unwrap(), data);
    }

    #[test]
    fn round_trip_owner_key(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (keys, opener, _) = account(EncryptionMode::OwnerKey);
        let (header, blob) = seal(&*keys.sealer(), &aad, &data);
        prop_assert_eq!(open(&*opener, &header, &aad, &blob).unwrap(), data);
    }

    #[test]
    fn any_flipped_bit_is_an_integrity_error(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        owner in any::<bool>(),
    ) {
        let mode = if owner { EncryptionMode::OwnerKey } else { EncryptionMode::ServerKey };
        let (keys, opener, _) = account(mode);
        let (header, mut blob) = seal(&*keys.sealer(), b"aad", &data);
        let i = at.index(blob.len());
        blob[i] ^= 1 << bit;
        assert_integrity(open(&*opener, &header, b"aad", &blob), "flipped bit");
    }

    #[test]
    fn any_truncation_is_an_integrity_error(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        cut in any::<prop::sample::Index>(),
    ) {
        let (keys, opener, _) = account(EncryptionMode::ServerKey);
        let (header, blob) = seal(&*keys.sealer(), b"", &data);
        let len = cut.index(blob.len());
        assert_integrity(open(&*opener, &header, b"", &blob[..len]), "truncated");
    }
}

#[test]
fn every_flipped_byte_fails_for_both_modes() {
    for mode in ENCRYPTED {
        let (keys, opener, _) = account(mode);
        let (header, blob) = seal(&*keys.sealer(), b"pack 1 blob 7", b"some file contents");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x80;
            assert_integrity(
                open(&*opener, &header, b"pack 1 blob 7", &bad),
                &format!("{mode:?} byte {i}"),
            );
        }
        // Header bytes are bound too: another scheme byte or ephemeral key fails.
        for i in 0..header.len() {
            let mut bad = header.clone();
            bad[i] ^= 0x01;
            assert_integrity(
                open(&*opener, &bad, b"pack 1 blob 7", &blob),
                &format!("{mode:?} header byte {i}"),
            );
        }
    }
}

#[test]
fn truncated_blobs_fail_with_a_clear_message() {
    let (keys, opener, _) = account(EncryptionMode::OwnerKey);
    let (header, blob) = seal(&*keys.sealer(), b"", b"x");
    for len in [0, 1, overhead(&header) - 1] {
        let e = open(&*opener, &header, b"", &blob[..len.min(blob.len())]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
    // One more byte at the end is also rejected.
    let mut longer = blob.clone();
    longer.push(0);
    assert_integrity(open(&*opener, &header, b"", &longer), "extended");
    // The empty plaintext seals to exactly the overhead and opens.
    let (header, blob) = seal(&*keys.sealer(), b"", b"");
    assert_eq!(blob.len(), overhead(&header));
    assert_eq!(open(&*opener, &header, b"", &blob).unwrap(), b"");
}

#[test]
fn wrong_aad_or_other_session_fails() {
    for mode in ENCRYPTED {
        let (keys, opener, _) = account(mode);
        let sealer = keys.sealer();
        let (header, blob) = seal(&*sealer, b"blob 1", b"payload");
        assert_integrity(open(&*opener, &header, b"blob 2", &blob), "wrong aad");
        assert_integrity(open(&*opener, &header, b"", &blob), "empty aad");
        let (other_header, _) = seal(&*sealer, b"blob 1", b"payload");
        assert_integrity(
            open(&*opener, &other_header, b"blob 1", &blob),
            "other header",
        );
        assert_eq!(
            open(&*opener, &header, b"blob 1", &blob).unwrap(),
            b"payload"
        );
    }
}

#[test]
fn one_session_seals_many_blobs() {
    let (keys, opener, _) = account(EncryptionMode::ServerKey);
    let session = keys.sealer().begin().unwrap();
    let blobs: Vec<Vec<u8>> = (0..5u8)
        .map(|i| {
            let mut b = vec![i; 100 * usize::from(i)];
            session.seal(&[i], &mut b).unwrap();
            b
        })
        .collect();
    let reader = opener.open_session(session.header()).unwrap();
    for (i, blob) in blobs.iter().enumerate().rev() {
        let mut buf = blob.clone();
        let i = u8::try_from(i).unwrap();
        reader.open(&[i], &mut buf).unwrap();
        assert_eq!(buf, vec![i; 100 * usize::from(i)]);
    }
}

#[test]
fn public_material_alone_cannot_open() {
    let master = MasterKey::generate();
    let (keys, owner) = AccountKeys::generate(AccountId::new(), EncryptionMode::OwnerKey).unwrap();
    let owner = owner.unwrap();
    let envelope = keys.to_envelope(&master).unwrap();
    drop(keys);

    // What the server has: the envelope (public key and hash keys only).
    let server = AccountKeys::from_envelope(&master, owner_account(&owner), &envelope).unwrap();
    let sealer = server.sealer();
    assert!(sealer.is_encrypted());
    let (header, blob) = seal(&*sealer, b"aad", b"the owner's mail");

    match server.opener(None).unwrap_err() {
        Error::KeyRequired { account } => assert_eq!(account, server.account()),
        e => panic!("expected KeyRequired, got {e}"),
    }
    let core: CoreError = server.opener(None).unwrap_err().into();
    assert!(
        matches!(&core, CoreError::KeyRequired { account } if *account == server.account().to_string()),
        "{core}"
    );

    // Another account's secret (owner-held or server-held) cannot open it.
    for mode in ENCRYPTED {
        let (_, other_opener, _) = account(mode);
        assert_integrity(
            open(&*other_opener, &header, b"aad", &blob),
            "other account",
        );
    }

    // The owner can.
    let opener = server.opener(Some(&owner)).unwrap();
    assert_eq!(
        open(&*opener, &header, b"aad", &blob).unwrap(),
        b"the owner's mail"
    );
}

fn owner_account(key: &OwnerKey) -> AccountId {
    backup_crypto::owner_key_account(key).unwrap()
}

#[test]
fn headers_the_opener_cannot_use_are_integrity_errors() {
    let (_, opener, _) = account(EncryptionMode::ServerKey);
    let (keys, _, _) = account(EncryptionMode::ServerKey);
    let (header, _) = seal(&*keys.sealer(), b"", b"");
    let mut other_scheme = header.clone();
    other_scheme[0] = 3;
    for bad in [
        Vec::new(),
        vec![1],
        header[..32].to_vec(),
        [&header[..], &[0]].concat(),
        other_scheme,
    ] {
        let e = opener.open_session(&bad).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    }
    let e = opener.open_session(&[]).err().unwrap();
    assert!(e.to_string().contains("not encrypted"), "{e}");
}

#[test]
fn unencrypted_mode_is_plain_but_keyed() {
    let (keys, opener, owner) = account(EncryptionMode::None);
    assert!(owner.is_none());
    let sealer = keys.sealer();
    assert!(!sealer.is_encrypted());
    let (header, blob) = seal(&*sealer, b"aad", b"plain");
    assert!(header.is_empty());
    assert_eq!(blob, b"plain");
    assert_eq!(open(&*opener, &header, b"aad", &blob).unwrap(), b"plain");
    // Keyed chunk ids: another account's ids differ.
    let (other, _, _) = account(EncryptionMode::None);
    assert_ne!(
        sealer.server_keys().chunk_id(b"x"),
        other.sealer().server_keys().chunk_id(b"x")
    );
    // A plain opener refuses encrypted objects.
    let (enc, _, _) = account(EncryptionMode::ServerKey);
    let (enc_header, _) = seal(&*enc.sealer(), b"", b"");
    assert_eq!(
        opener.open_session(&enc_header).err().unwrap().kind(),
        ErrorKind::Integrity
    );
}

#[test]
fn sealers_keep_the_accounts_server_keys() {
    let master = MasterKey::generate();
    for mode in [
        EncryptionMode::None,
        EncryptionMode::ServerKey,
        EncryptionMode::OwnerKey,
    ] {
        let (keys, _) = AccountKeys::generate(AccountId::new(), mode).unwrap();
        let back = AccountKeys::from_envelope(
            &master,
            keys.account(),
            &keys.to_envelope(&master).unwrap(),
        )
        .unwrap();
        let (a, b) = (keys.sealer(), back.sealer());
        let (a, b) = (a.server_keys(), b.server_keys());
        assert_eq!(a.chunk_id(b"data"), b.chunk_id(b"data"));
        assert_eq!(a.mac(MacDomain::Pack, b"p"), b.mac(MacDomain::Pack, b"p"));
        assert_eq!(a.chunker_seed(), b.chunker_seed());
    }
}

#[test]
fn sealers_and_openers_debug_without_secrets() {
    let (keys, opener, owner) = account(EncryptionMode::OwnerKey);
    let owner = owner.unwrap();
    let secret_hex = owner.expose().split(':').nth(2).unwrap().to_owned();
    let dbg = format!(
        "{:?} {:?} {:?} {opener:?} {owner:?}",
        keys,
        keys.sealer(),
        keys.opener(Some(&owner)).unwrap()
    );
    assert!(!dbg.contains(&secret_hex[..16]), "{dbg}");
    assert!(dbg.contains("redacted"), "{dbg}");
}
