#![cfg(unix)]

//! Modes of the vault's files whatever the umask. A test binary of its own: the umask is
//! process-wide, and this binary holds a single test so that nothing else runs under the
//! umasks it sets.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use backup_core::ports::KeyVault;
use backup_crypto::vault::{MASTER_KEY_FILE, NEXT_MASTER_KEY_FILE};
use backup_crypto::{MasterKey, MasterKeyVault};
use rustix::fs::Mode;
use rustix::process::umask;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Creates a state directory under `root` every way the vault can, and checks the modes.
async fn check_modes(root: &Path) {
    let state = root.join("state");
    let (vault, created) = MasterKeyVault::load_or_create(&state).unwrap();
    assert!(created);
    assert_eq!(mode(&state), 0o700, "state directory");
    assert_eq!(mode(&state.join(MASTER_KEY_FILE)), 0o600, "master key");

    vault.begin_rotation().await.unwrap();
    assert_eq!(mode(&state.join(NEXT_MASTER_KEY_FILE)), 0o600, "next key");
    vault.finish_rotation().await.unwrap();
    assert_eq!(mode(&state.join(MASTER_KEY_FILE)), 0o600, "rotated key");

    let imported = root.join("imported");
    assert!(MasterKeyVault::import_text(&imported, &vault.export_text()).unwrap());
    assert_eq!(mode(&imported), 0o700, "imported state directory");
    assert_eq!(mode(&imported.join(MASTER_KEY_FILE)), 0o600, "imported key");

    let saved = root.join("saved.key");
    MasterKey::generate().save_new(&saved).unwrap();
    assert_eq!(mode(&saved), 0o600, "MasterKey::save_new");
}

#[tokio::test]
async fn key_files_are_0600_and_the_state_directory_0700_whatever_the_umask() {
    // Made before the umasks change: 0o277 would leave a new directory unwritable.
    let open = tempfile::tempdir().unwrap();
    let strict = tempfile::tempdir().unwrap();

    // Nothing taken away: the modes must not come from the umask's defaults.
    let before = umask(Mode::empty());
    check_modes(open.path()).await;

    // Owner bits taken away too: the modes are set, not merely requested.
    umask(Mode::from_raw_mode(0o277));
    check_modes(strict.path()).await;

    umask(before);
}
