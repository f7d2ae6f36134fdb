//! MasterKeyVault: generate and open in every mode, owner keys, rotation across processes
//! and crashes, account records, key files.

use std::path::Path;

use backup_core::ErrorKind;
use backup_core::model::{AccountId, EncryptionMode, OwnerKey};
use backup_core::ports::{ContentOpener, ContentSealer, KeyVault, OpenedKeys};
use backup_crypto::vault::{MASTER_KEY_FILE, NEXT_MASTER_KEY_FILE};
use backup_crypto::{AccountKeys, MasterKey, MasterKeyVault};

const MODES: [EncryptionMode; 3] = [
    EncryptionMode::None,
    EncryptionMode::ServerKey,
    EncryptionMode::OwnerKey,
];

/// Seals a blob with `sealer` and opens it with `opener`.
fn round_trip(sealer: &dyn ContentSealer, opener: &dyn ContentOpener) {
    let session = sealer.begin().unwrap();
    let mut blob = b"account content".to_vec();
    session.seal(b"chunk", &mut blob).unwrap();
    opener
        .open_session(session.header())
        .unwrap()
        .open(b"chunk", &mut blob)
        .unwrap();
    assert_eq!(blob, b"account content");
}

fn opens(opened: &OpenedKeys) {
    let opener = opened.opener.as_ref().expect("an opener");
    round_trip(opened.sealer.as_ref(), opener.as_ref());
}

fn kind<T: std::fmt::Debug>(r: backup_core::Result<T>) -> ErrorKind {
    r.unwrap_err().kind()
}

fn next_key(dir: &Path) -> MasterKey {
    MasterKey::load(dir.join(NEXT_MASTER_KEY_FILE)).unwrap()
}

#[tokio::test]
async fn generate_and_open_in_every_mode() {
    let vault = MasterKeyVault::from_key(MasterKey::generate());
    for mode in MODES {
        let account = AccountId::new();
        let new = vault.generate(account, mode).await.unwrap();
        assert_eq!(new.owner_key.is_some(), mode == EncryptionMode::OwnerKey);
        let opened = vault
            .open(account, &new.envelope, new.owner_key.as_ref())
            .await
            .unwrap();
        assert_eq!(opened.key_id, new.key_id);
        assert_eq!(opened.sealer.is_encrypted(), mode.is_encrypted());
        opens(&opened);
        if mode != EncryptionMode::OwnerKey {
            // No owner key needed (and none used).
            opens(&vault.open(account, &new.envelope, None).await.unwrap());
        }
    }
}

#[tokio::test]
async fn owner_key_accounts_open_only_with_their_key() {
    let vault = MasterKeyVault::from_key(MasterKey::generate());
    let account = AccountId::new();
    let new = vault
        .generate(account, EncryptionMode::OwnerKey)
        .await
        .unwrap();
    let owner_key = new.owner_key.unwrap();

    // No key: a writer (sealer) but no opener.
    let writer = vault.open(account, &new.envelope, None).await.unwrap();
    assert!(writer.opener.is_none());
    assert!(writer.sealer.is_encrypted());

    // The right key: an opener that reads what the writer sealed.
    let reader = vault
        .open(account, &new.envelope, Some(&owner_key))
        .await
        .unwrap();
    round_trip(
        writer.sealer.as_ref(),
        reader.opener.as_ref().unwrap().as_ref(),
    );

    // Another account's key, and this account's key before a reset: WrongKey.
    let other = vault
        .generate(AccountId::new(), EncryptionMode::OwnerKey)
        .await
        .unwrap();
    let reset = vault
        .generate(account, EncryptionMode::OwnerKey)
        .await
        .unwrap();
    for wrong in [other.owner_key.as_ref(), reset.owner_key.as_ref()] {
        let e = vault.open(account, &new.envelope, wrong).await.unwrap_err();
        assert!(matches!(e, backup_core::Error::WrongKey { .. }), "{e}");
    }
    // A mistyped key is named as such.
    let typo = OwnerKey::new(format!("{}x", owner_key.expose()));
    assert_eq!(
        kind(vault.open(account, &new.envelope, Some(&typo)).await),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn an_envelope_opens_only_as_its_account_and_under_its_key() {
    let vault = MasterKeyVault::from_key(MasterKey::generate());
    let (a, b) = (AccountId::new(), AccountId::new());
    let new = vault.generate(a, EncryptionMode::ServerKey).await.unwrap();
    let e = vault.open(b, &new.envelope, None).await.unwrap_err();
    assert!(e.to_string().contains(&a.to_string()), "{e}");

    let stranger = MasterKeyVault::from_key(MasterKey::generate());
    assert_eq!(
        kind(stranger.open(a, &new.envelope, None).await),
        ErrorKind::Integrity
    );
    let mut flipped = new.envelope.clone();
    flipped[100] ^= 1;
    assert_eq!(
        kind(vault.open(a, &flipped, None).await),
        ErrorKind::Integrity
    );
    assert_eq!(kind(vault.open(a, b"", None).await), ErrorKind::Integrity);
}

#[tokio::test]
async fn rotation_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, created) = MasterKeyVault::load_or_create(dir.path()).unwrap();
    assert!(created);
    let old_fingerprint = vault.fingerprint();
    // Loaded before the rotation: it learns of it from the directory only.
    let early = MasterKeyVault::load(dir.path()).unwrap();

    let mut accounts = Vec::new();
    for i in 0..6 {
        let account = AccountId::new();
        let new = vault.generate(account, MODES[i % 3]).await.unwrap();
        accounts.push((account, new));
    }

    vault.begin_rotation().await.unwrap();
    assert!(dir.path().join(NEXT_MASTER_KEY_FILE).exists());
    let next_fingerprint = vault.next_fingerprint().unwrap();
    assert_ne!(next_fingerprint, old_fingerprint);
    assert_eq!(vault.fingerprint(), old_fingerprint);

    // Half the envelopes re-wrapped: they open under the next key only.
    let mut envelopes = Vec::new();
    for (i, (account, new)) in accounts.iter().enumerate() {
        let envelope = if i % 2 == 0 {
            let rewrapped = vault.rewrap(*account, &new.envelope).await.unwrap();
            assert!(
                AccountKeys::from_envelope(&next_key(dir.path()), *account, &rewrapped).is_ok()
            );
            rewrapped
        } else {
            new.envelope.clone()
        };
        envelopes.push(envelope);
    }

    // Another process, loaded during the rotation, and the one loaded before it open both.
    let during = MasterKeyVault::load(dir.path()).unwrap();
    for v in [&vault, &during, &early] {
        for ((account, new), envelope) in accounts.iter().zip(&envelopes) {
            let opened = v
                .open(*account, envelope, new.owner_key.as_ref())
                .await
                .unwrap();
            assert_eq!(opened.key_id, new.key_id);
            opens(&opened);
        }
    }
    assert_eq!(during.next_fingerprint(), Some(next_fingerprint.clone()));

    // The rest, then finish.
    for (i, (account, _)) in accounts.iter().enumerate() {
        if i % 2 == 1 {
            envelopes[i] = during.rewrap(*account, &envelopes[i]).await.unwrap();
        }
    }
    vault.finish_rotation().await.unwrap();
    assert!(!dir.path().join(NEXT_MASTER_KEY_FILE).exists());
    assert_eq!(vault.fingerprint(), next_fingerprint);
    assert_eq!(vault.next_fingerprint(), None);
    assert_eq!(
        MasterKey::load(dir.path().join(MASTER_KEY_FILE))
            .unwrap()
            .fingerprint(),
        next_fingerprint
    );

    // Vaults loaded before the finish read the new key from disk.
    for v in [&during, &early] {
        for ((account, new), envelope) in accounts.iter().zip(&envelopes) {
            opens(
                &v.open(*account, envelope, new.owner_key.as_ref())
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(v.fingerprint(), next_fingerprint);
    }
    // An envelope still under the old key no longer opens anywhere.
    let (account, new) = &accounts[1];
    for v in [&vault, &during, &early] {
        assert_eq!(
            kind(v.open(*account, &new.envelope, None).await),
            ErrorKind::Integrity
        );
    }
    // Finishing again (a retry after a crash) changes nothing.
    vault.finish_rotation().await.unwrap();
    during.finish_rotation().await.unwrap();
    assert_eq!(during.fingerprint(), next_fingerprint);
}

#[tokio::test]
async fn generate_during_a_rotation_uses_the_next_key() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = MasterKeyVault::load_or_create(dir.path()).unwrap();
    let other = MasterKeyVault::load(dir.path()).unwrap();
    other.begin_rotation().await.unwrap();
    let account = AccountId::new();
    // `vault` learns of the rotation from the directory.
    let new = vault
        .generate(account, EncryptionMode::ServerKey)
        .await
        .unwrap();
    assert!(AccountKeys::from_envelope(&next_key(dir.path()), account, &new.envelope).is_ok());
    other.finish_rotation().await.unwrap();
    opens(&vault.open(account, &new.envelope, None).await.unwrap());
}

#[tokio::test]
async fn a_crashed_rotation_resumes_with_the_same_next_key() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = MasterKeyVault::load_or_create(dir.path()).unwrap();
    let account = AccountId::new();
    let new = vault
        .generate(account, EncryptionMode::ServerKey)
        .await
        .unwrap();
    let other = AccountId::new();
    let other_new = vault.generate(other, EncryptionMode::None).await.unwrap();

    vault.begin_rotation().await.unwrap();
    let next_text = std::fs::read(dir.path().join(NEXT_MASTER_KEY_FILE)).unwrap();
    vault.begin_rotation().await.unwrap();
    let rewrapped = vault.rewrap(account, &new.envelope).await.unwrap();
    drop(vault); // the process dies here

    let resumed = MasterKeyVault::load(dir.path()).unwrap();
    resumed.begin_rotation().await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join(NEXT_MASTER_KEY_FILE)).unwrap(),
        next_text
    );
    // Re-wrapping again what was re-wrapped before the crash is harmless.
    let rewrapped = resumed.rewrap(account, &rewrapped).await.unwrap();
    let other_rewrapped = resumed.rewrap(other, &other_new.envelope).await.unwrap();
    resumed.finish_rotation().await.unwrap();

    let after = MasterKeyVault::load(dir.path()).unwrap();
    opens(&after.open(account, &rewrapped, None).await.unwrap());
    opens(&after.open(other, &other_rewrapped, None).await.unwrap());
}

#[tokio::test]
async fn rotation_in_memory_writes_nothing() {
    let vault = MasterKeyVault::from_key(MasterKey::generate());
    assert!(vault.dir().is_none());
    let account = AccountId::new();
    let new = vault
        .generate(account, EncryptionMode::ServerKey)
        .await
        .unwrap();
    let record = vault.seal_record(account, b"settings").await.unwrap();
    let before = vault.fingerprint();

    // Without a rotation, rewrap re-wraps under the current key.
    let same_key = vault.rewrap(account, &new.envelope).await.unwrap();
    assert_ne!(same_key, new.envelope);
    opens(&vault.open(account, &same_key, None).await.unwrap());

    vault.begin_rotation().await.unwrap();
    let next = vault.next_fingerprint().unwrap();
    vault.begin_rotation().await.unwrap();
    assert_eq!(vault.next_fingerprint().unwrap(), next);
    let rewrapped = vault.rewrap(account, &new.envelope).await.unwrap();
    let resealed = vault
        .seal_record(account, &vault.open_record(account, &record).await.unwrap())
        .await
        .unwrap();
    vault.finish_rotation().await.unwrap();
    assert_eq!(vault.fingerprint(), next);
    assert_ne!(next, before);
    opens(&vault.open(account, &rewrapped, None).await.unwrap());
    assert_eq!(
        vault.open_record(account, &resealed).await.unwrap(),
        b"settings"
    );
    assert_eq!(
        kind(vault.open(account, &new.envelope, None).await),
        ErrorKind::Integrity
    );
}

#[tokio::test]
async fn records_round_trip_and_refuse_anything_else() {
    let vault = MasterKeyVault::from_key(MasterKey::generate());
    let (account, other) = (AccountId::new(), AccountId::new());
    let plaintext =
        br#"{"username":"zebulon-the-tenant","email":"zeb@example.org","exclude":["*.tmp"]}"#;
    let sealed = vault.seal_record(account, plaintext).await.unwrap();
    assert_eq!(&sealed[..8], b"BKUPREC1");
    assert_eq!(
        vault.open_record(account, &sealed).await.unwrap(),
        plaintext
    );
    // Nothing of the settings is readable in the stored bytes.
    for secret in [&b"zebulon"[..], b"example.org", b"username", b"*.tmp"] {
        assert!(
            !sealed.windows(secret.len()).any(|w| w == secret),
            "record shows {:?}",
            String::from_utf8_lossy(secret)
        );
    }
    // Sealing twice gives different bytes (fresh nonce).
    assert_ne!(vault.seal_record(account, plaintext).await.unwrap(), sealed);

    // Any flipped byte, any truncation, an extension: Integrity.
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x20;
        assert_eq!(
            kind(vault.open_record(account, &bad).await),
            ErrorKind::Integrity,
            "byte {i}"
        );
    }
    for len in 0..sealed.len() {
        assert_eq!(
            kind(vault.open_record(account, &sealed[..len]).await),
            ErrorKind::Integrity,
            "truncated to {len}"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert_eq!(
        kind(vault.open_record(account, &longer).await),
        ErrorKind::Integrity
    );

    // Another account's record, another master key's record: Integrity.
    assert_eq!(
        kind(vault.open_record(other, &sealed).await),
        ErrorKind::Integrity
    );
    let stranger = MasterKeyVault::from_key(MasterKey::generate());
    assert_eq!(
        kind(stranger.open_record(account, &sealed).await),
        ErrorKind::Integrity
    );
}

#[tokio::test]
async fn records_sealed_during_a_rotation_open_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = MasterKeyVault::load_or_create(dir.path()).unwrap();
    let early = MasterKeyVault::load(dir.path()).unwrap();
    let account = AccountId::new();
    let old = vault.seal_record(account, b"before").await.unwrap();

    vault.begin_rotation().await.unwrap();
    let during = vault.seal_record(account, b"during").await.unwrap();
    // Sealed under the next key: the old key alone does not open it.
    assert_eq!(
        kind(
            MasterKeyVault::from_key(MasterKey::load(dir.path().join(MASTER_KEY_FILE)).unwrap())
                .open_record(account, &during)
                .await
        ),
        ErrorKind::Integrity
    );
    assert_eq!(
        next_key(dir.path()).open_record(account, &during).unwrap(),
        b"during"
    );
    // Both open while the rotation runs, here and in a vault loaded before it.
    for v in [&vault, &early] {
        assert_eq!(v.open_record(account, &old).await.unwrap(), b"before");
        assert_eq!(v.open_record(account, &during).await.unwrap(), b"during");
    }

    vault.finish_rotation().await.unwrap();
    let after = MasterKeyVault::load(dir.path()).unwrap();
    for v in [&vault, &early, &after] {
        assert_eq!(v.open_record(account, &during).await.unwrap(), b"during");
    }
    // The old key is gone: its records no longer open.
    assert_eq!(
        kind(after.open_record(account, &old).await),
        ErrorKind::Integrity
    );
}

#[tokio::test]
async fn shred_is_a_no_op() {
    let vault = MasterKeyVault::from_key(MasterKey::generate());
    let account = AccountId::new();
    let new = vault.generate(account, EncryptionMode::None).await.unwrap();
    vault.shred(account).await.unwrap();
    // The vault keeps nothing: the envelope alone still decides.
    opens(&vault.open(account, &new.envelope, None).await.unwrap());
}

#[test]
fn load_needs_a_key_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = MasterKeyVault::load(dir.path()).unwrap_err();
    let path = dir.path().join(MASTER_KEY_FILE);
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert_eq!(backup_core::Error::from(e).kind(), ErrorKind::Io);

    // load_or_create creates the directory, then finds the key it made.
    let state = dir.path().join("nested/state");
    let (first, created) = MasterKeyVault::load_or_create(&state).unwrap();
    assert!(created);
    let (second, created) = MasterKeyVault::load_or_create(&state).unwrap();
    assert!(!created);
    assert_eq!(first.fingerprint(), second.fingerprint());
    assert_eq!(first.dir(), Some(state.as_path()));
}

#[test]
fn export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = MasterKeyVault::load_or_create(dir.path().join("a")).unwrap();
    let text = vault.export_text();
    assert_eq!(
        MasterKey::from_text(&text).unwrap().fingerprint(),
        vault.fingerprint()
    );

    // Into a new directory, twice (the second time finds it there).
    let b = dir.path().join("b");
    assert!(MasterKeyVault::import_text(&b, &text).unwrap());
    assert!(!MasterKeyVault::import_text(&b, &text).unwrap());
    assert_eq!(
        MasterKeyVault::load(&b).unwrap().fingerprint(),
        vault.fingerprint()
    );

    // A different key is refused and the installed one kept.
    let other = MasterKey::generate().to_text();
    let e = MasterKeyVault::import_text(&b, &other).unwrap_err();
    assert_eq!(backup_core::Error::from(e).kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        MasterKeyVault::load(&b).unwrap().fingerprint(),
        vault.fingerprint()
    );
    // Mistyped text is refused before anything is written.
    let c = dir.path().join("c");
    let mut typo = text.to_string();
    typo.pop();
    assert!(MasterKeyVault::import_text(&c, &typo).is_err());
    assert!(!c.exists());
}

#[tokio::test]
async fn debug_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = MasterKeyVault::load_or_create(dir.path()).unwrap();
    vault.begin_rotation().await.unwrap();
    let dbg = format!("{vault:?} {vault:#?}");
    let texts = [
        vault.export_text().to_string(),
        next_key(dir.path()).to_text().to_string(),
    ];
    for text in texts {
        let hex = &text["bkup-master-v1:".len()..][..64];
        for part in hex.as_bytes().chunks(12) {
            let part = std::str::from_utf8(part).unwrap();
            assert!(!dbg.contains(part), "{dbg}");
        }
    }
    assert!(dbg.contains(&vault.fingerprint()), "{dbg}");
}
