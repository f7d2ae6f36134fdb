//! The master key file.

use std::fs;
use std::sync::Arc;

use backup_core::model::{AccountId, EncryptionMode};
use backup_crypto::{AccountKeys, Error, MasterKey};

#[test]
fn created_once_with_owner_only_permissions_and_reloaded_equal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");

    let (key, created) = MasterKey::load_or_create(&path).unwrap();
    assert!(created);
    let content = fs::read_to_string(&path).unwrap();
    assert_eq!(content, format!("{}\n", key.to_text().as_str()));
    assert!(content.starts_with("bkup-master-v1:"));
    assert_eq!(content.lines().count(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["master.key"]);

    // Reloading (both ways) gives the same key: same fingerprint, opens the same envelopes.
    let (again, created) = MasterKey::load_or_create(&path).unwrap();
    assert!(!created);
    let loaded = MasterKey::load(&path).unwrap();
    assert_eq!(again.fingerprint(), key.fingerprint());
    assert_eq!(loaded.fingerprint(), key.fingerprint());
    let (keys, _) = AccountKeys::generate(AccountId::new(), EncryptionMode::ServerKey).unwrap();
    let env = keys.to_envelope(&key).unwrap();
    AccountKeys::from_envelope(&loaded, keys.account(), &env).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), content);
}

#[test]
fn existing_files_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let first = MasterKey::generate();
    first.save_new(&path).unwrap();
    let content = fs::read(&path).unwrap();

    let e = MasterKey::generate().save_new(&path).unwrap_err();
    assert!(matches!(e, Error::MasterKeyExists { .. }), "{e}");
    assert!(matches!(
        backup_core::Error::from(e),
        backup_core::Error::AlreadyExists { .. }
    ));
    assert_eq!(fs::read(&path).unwrap(), content);

    let (loaded, created) = MasterKey::load_or_create(&path).unwrap();
    assert!(!created);
    assert_eq!(loaded.fingerprint(), first.fingerprint());
    assert_eq!(fs::read(&path).unwrap(), content);
}

#[test]
fn a_damaged_file_is_an_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let mut text = MasterKey::generate().to_text().to_string();
    let i = 20;
    let c = if &text[i..=i] == "0" { "1" } else { "0" };
    text.replace_range(i..=i, c);
    fs::write(&path, &text).unwrap();
    for e in [
        MasterKey::load(&path).unwrap_err(),
        MasterKey::load_or_create(&path).err().unwrap(),
    ] {
        let msg = e.to_string();
        assert!(matches!(e, Error::Malformed { .. }), "{msg}");
        assert!(
            msg.contains("master.key") && msg.contains("mistyped"),
            "{msg}"
        );
        assert!(!msg.contains(&text[15..40]), "{msg}");
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), text);

    fs::write(&path, vec![b'a'; 10_000]).unwrap();
    assert!(
        MasterKey::load(&path)
            .unwrap_err()
            .to_string()
            .contains("too large")
    );
}

#[test]
fn missing_files_and_directories_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.key");
    match MasterKey::load(&missing).unwrap_err() {
        Error::Io { path, source } => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        e => panic!("expected Io, got {e}"),
    }
    let nested = dir.path().join("no/such/dir/master.key");
    let e = MasterKey::load_or_create(&nested).err().unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(matches!(
        backup_core::Error::from(e),
        backup_core::Error::Io { .. }
    ));
}

#[test]
fn concurrent_creators_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("master.key"));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let path = Arc::clone(&path);
            std::thread::spawn(move || {
                let (k, created) = MasterKey::load_or_create(&*path).unwrap();
                (k.fingerprint(), created)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|(_, c)| *c).count(), 1, "{results:?}");
    assert!(
        results.iter().all(|(f, _)| *f == results[0].0),
        "{results:?}"
    );
}

#[test]
fn text_form_round_trips_and_debug_is_redacted() {
    let key = MasterKey::from_bytes([0x3c; 32]);
    let text = key.to_text();
    assert_eq!(
        MasterKey::from_text(&text).unwrap().fingerprint(),
        key.fingerprint()
    );
    let hex = text.split(':').nth(1).unwrap();
    assert_eq!(hex, "3c".repeat(32));
    let dbg = format!("{key:?} {key:#?}");
    assert!(!dbg.contains("3c3c") && dbg.contains("redacted"), "{dbg}");
    assert!(!key.fingerprint().contains("3c3c"));
}
