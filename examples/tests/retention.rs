//! `backupctl` commands that make storage shrink, end to end: snapshot locks, `forget` by a
//! retention policy (dry run first, then for real), `prune` with no grace, orphans of
//! removed accounts (list, reassign, prune), `usage`, their error exit codes, and the same
//! collection on S3 and SFTP.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_catalog::SqliteCatalog;
use backup_core::model::AccountId;
use backup_core::ports::Clock;
use backup_core::service::Server;
use backup_crypto::MasterKeyVault;
use backup_examples::compare_trees;
use backup_storage::UrlResolver;
use chrono::{DateTime, Utc};
use serde_json::Value;

mod server_support;
use server_support::{Ctl, copy_tree, file_url, files_below, filler, s3_url, sftp_url};

/// A state directory under `dir/state` with the `file://` destination `local` at
/// `dir/dest`.
fn setup(dir: &Path) -> Ctl {
    let ctl = Ctl::new(&dir.join("state"));
    ctl.ok(&["init"]);
    ctl.ok(&["destination", "add", "local", &file_url(&dir.join("dest"))]);
    ctl
}

/// A home directory that changes between backups: shared pages every version keeps, and one
/// incompressible file of its own (so that a forgotten version frees packs).
struct Home {
    live: PathBuf,
    versions: PathBuf,
    next: u64,
}

impl Home {
    fn new(dir: &Path, name: &str) -> Self {
        let live = dir.join(name);
        for i in 0..6u64 {
            let p = live.join(format!("public_html/page{i}.html"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, filler(i + 1, 3_000 + 500 * i as usize, true)).unwrap();
        }
        Self {
            live,
            versions: dir.join(format!("{name}-versions")),
            next: 0,
        }
    }

    /// Makes the next version; returns a copy of it (what its snapshot must restore to).
    fn change(&mut self) -> PathBuf {
        let v = self.next;
        self.next += 1;
        if v > 0 {
            std::fs::remove_file(self.live.join(format!("version{}.bin", v - 1))).unwrap();
        }
        std::fs::write(
            self.live.join(format!("version{v}.bin")),
            // `filler` sets the seed's low bit: odd seeds only, so no two versions agree.
            filler(10_001 + 2 * v, 120_000, false),
        )
        .unwrap();
        std::fs::write(
            self.live.join("public_html/index.html"),
            format!("<h1>version {v}</h1>"),
        )
        .unwrap();
        let copy = self.versions.join(v.to_string());
        copy_tree(&self.live, &copy);
        copy
    }

    fn path(&self) -> String {
        self.live.display().to_string()
    }
}

/// Backs up `home` (changed first) to `destination` as a scheduled snapshot; its id and
/// the copy of what it holds.
fn backup(ctl: &Ctl, user: &str, home: &mut Home, destination: &str) -> (String, PathBuf) {
    let expected = home.change();
    let snap = ctl.json(&[
        "backup",
        user,
        "--source",
        &home.path(),
        "--destination",
        destination,
        "--kind",
        "scheduled",
        "--json",
    ]);
    assert_eq!(snap["kind"], "scheduled");
    (snap["id"].as_str().unwrap().to_owned(), expected)
}

fn snapshot_ids(ctl: &Ctl, user: &str) -> BTreeSet<String> {
    ctl.json(&["snapshots", user, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

/// The ids a forget report keeps (`"keep"`) or forgets (`"forget"`) on every destination.
fn decided(report: &Value, list: &str) -> BTreeSet<String> {
    report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["decision"][list].as_array().unwrap().iter())
        .map(|e| e["snapshot"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids a forget report says it forgot.
fn forgotten(report: &Value) -> BTreeSet<String> {
    report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["forgotten"].as_array().unwrap().iter())
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// The reasons a forget report gives for keeping `id`.
fn keep_reasons(report: &Value, id: &str) -> Vec<String> {
    report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["decision"]["keep"].as_array().unwrap().iter())
        .find(|k| k["snapshot"] == id)
        .unwrap_or_else(|| panic!("{id} is not kept: {report}"))["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// A sum over the per-destination reports of a `prune --json`.
fn prune_sum(run: &Value, field: &str) -> u64 {
    run["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[1][field].as_u64().unwrap())
        .sum()
}

/// Restores snapshot `id` into a fresh directory and checks it byte for byte.
fn restores(ctl: &Ctl, dir: &Path, user: &str, id: &str, expected: &Path, key: Option<&Path>) {
    let target = dir.join(format!("restored-{user}-{id}"));
    let t = target.display().to_string();
    let mut args = vec!["restore", user, "--target", &t, "--snapshot", id];
    let k;
    if let Some(key) = key {
        k = key.display().to_string();
        args.extend(["--key-file", &k]);
    }
    ctl.ok(&args);
    assert_eq!(
        compare_trees(expected, &target.join("home")).unwrap(),
        None,
        "snapshot {id} restores to {}",
        expected.display()
    );
}

fn account_id(ctl: &Ctl, user: &str) -> String {
    ctl.json(&["account", "show", user, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

// 1. Lock, forget (dry run, then for real), prune, restore, verify, unlock.

#[test]
fn lock_forget_prune_restore_and_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ctl = setup(dir);
    ctl.ok(&["account", "add", "alice"]);
    let mut home = Home::new(dir, "alice");
    let snaps: Vec<(String, PathBuf)> = (0..4)
        .map(|_| backup(&ctl, "alice", &mut home, "local"))
        .collect();
    let [s0, s1, s2, s3] = [&snaps[0].0, &snaps[1].0, &snaps[2].0, &snaps[3].0];

    let locked = ctl.json(&["snapshot", "lock", "alice", s1, "--json"]);
    assert_eq!(locked["locked"], true);
    assert_eq!(
        locked["lock_until"],
        Value::Null,
        "no --ttl: until unlocked"
    );
    let listed = ctl.ok(&["snapshots", "alice"]);
    let line = listed.lines().find(|l| l.starts_with(s1.as_str())).unwrap();
    assert!(line.contains("locked"), "{listed}");

    // The dry run keeps the newest and the locked one, saying why, and removes nothing.
    let dry = ctl.json(&["forget", "alice", "--keep-last", "1", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(decided(&dry, "keep"), set(&[s1, s3]));
    assert_eq!(decided(&dry, "forget"), set(&[s0, s2]));
    assert_eq!(keep_reasons(&dry, s1), ["locked"]);
    assert_eq!(keep_reasons(&dry, s3), ["last", "newest"]);
    assert!(forgotten(&dry).is_empty());
    assert_eq!(snapshot_ids(&ctl, "alice"), set(&[s0, s1, s2, s3]));
    let human = ctl.ok(&["forget", "alice", "--keep-last", "1", "--dry-run"]);
    let line = |verb: &str, id: &str| {
        human
            .lines()
            .find(|l| l.trim_start().starts_with(verb) && l.contains(id))
            .unwrap_or_else(|| panic!("no {verb} line for {id}: {human}"))
            .to_owned()
    };
    assert!(line("keep", s1).ends_with("(locked)"), "{human}");
    assert!(line("keep", s3).ends_with("(last, newest)"), "{human}");
    assert!(line("forget", s0).ends_with("(not-kept)"), "{human}");
    assert!(line("forget", s2).contains("not-kept"), "{human}");
    assert!(human.contains("nothing was removed"), "{human}");
    assert_eq!(snapshot_ids(&ctl, "alice").len(), 4);

    // The real run removes exactly what the dry run said.
    let real = ctl.json(&["forget", "alice", "--keep-last", "1", "--json"]);
    assert_eq!(real["dry_run"], false);
    assert_eq!(forgotten(&real), decided(&dry, "forget"));
    assert_eq!(snapshot_ids(&ctl, "alice"), decided(&dry, "keep"));

    // Collection: a dry run writes nothing; the real run deletes the forgotten packs.
    let dest = dir.join("dest");
    let before = files_below(&dest);
    let usage_before = ctl.json(&["usage", "alice", "--json"]);
    assert_eq!(usage_before["snapshots"], 2);
    // The two forgotten versions (120 KB each, incompressible) are dead: in packs of their
    // own, or beside live blobs (the workers decide what shares a pack).
    let figure = |u: &Value, f: &str| u["destinations"][0]["usage"][f].as_u64().unwrap();
    let dead = figure(&usage_before, "pack_bytes") - figure(&usage_before, "referenced_bytes");
    assert!(dead > 200_000, "{usage_before}");
    let dry_prune = ctl.json(&["prune", "--grace", "0s", "--dry-run", "--json"]);
    assert!(prune_sum(&dry_prune, "deleted_bytes") > 0, "{dry_prune}");
    assert_eq!(files_below(&dest), before, "a dry run writes nothing");
    let human = ctl.ok(&["prune", "--grace", "0s", "--dry-run"]);
    assert!(
        human.contains("would delete") && human.contains("would repack"),
        "{human}"
    );
    let run = ctl.json(&["prune", "--grace", "0s", "--json"]);
    assert!(run["problems"].as_array().unwrap().is_empty(), "{run}");
    let deleted = prune_sum(&run, "deleted_bytes");
    assert!(deleted > 0, "{run}");
    assert!(
        prune_sum(&run, "deleted_packs") >= prune_sum(&dry_prune, "deleted_packs"),
        "{run} {dry_prune}"
    );
    let usage = ctl.json(&["usage", "alice", "--json"]);
    assert_eq!(
        usage["destinations"][0]["usage"]["unreferenced_bytes"], 0,
        "{usage}"
    );
    // Both versions are gone (deleted, or repacked out of a shared pack).
    assert!(
        figure(&usage, "pack_bytes") + 200_000 < figure(&usage_before, "pack_bytes"),
        "{usage} {usage_before}"
    );
    let everyone = ctl.ok(&["usage"]);
    assert!(
        everyone.lines().any(|l| l.starts_with("alice ")),
        "{everyone}"
    );

    // What is left restores byte for byte and verifies.
    for (id, expected) in [&snaps[1], &snaps[3]] {
        restores(&ctl, dir, "alice", id, expected, None);
    }
    let out = ctl.ok(&["verify", "alice", "--read-data"]);
    assert!(out.contains("ok"), "{out}");

    // Unlocked, the old snapshot goes at the next forget.
    let unlocked = ctl.json(&["snapshot", "unlock", "alice", s1, "--json"]);
    assert_eq!(unlocked["locked"], false);
    let again = ctl.json(&["forget", "alice", "--keep-last", "1", "--json"]);
    assert_eq!(forgotten(&again), set(&[s1]));
    assert_eq!(snapshot_ids(&ctl, "alice"), set(&[s3]));
    let run = ctl.json(&["prune", "--grace", "0s", "--json"]);
    assert!(prune_sum(&run, "deleted_bytes") > 0, "{run}");
    restores(&ctl, dir, "alice", s3, &snaps[3].1, None);
    let out = ctl.ok(&["verify", "alice", "--read-data"]);
    assert!(out.contains("ok"), "{out}");
}

// 2. A lock survives a catalog rebuild.

#[test]
fn locks_survive_a_catalog_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ctl = setup(dir);
    ctl.ok(&["account", "add", "bruno"]);
    let mut home = Home::new(dir, "bruno");
    let snaps: Vec<(String, PathBuf)> = (0..4)
        .map(|_| backup(&ctl, "bruno", &mut home, "local"))
        .collect();
    let [s0, s1, s2, s3] = [&snaps[0].0, &snaps[1].0, &snaps[2].0, &snaps[3].0];
    ctl.ok(&["snapshot", "lock", "bruno", s0]);
    let timed = ctl.json(&["snapshot", "lock", "bruno", s1, "--ttl", "5", "--json"]);
    let until: DateTime<Utc> = timed["lock_until"].as_str().unwrap().parse().unwrap();
    let days = (until - Utc::now()).num_hours();
    assert!((119..=120).contains(&days), "a lock of 5 days: {until}");

    // A new server: the exported master key, an empty catalog, the destination alone.
    let key = dir.join("master.txt");
    std::fs::write(&key, ctl.ok(&["master-key", "export"])).unwrap();
    let other = Ctl::new(&dir.join("rebuilt"));
    other.ok(&["master-key", "import", &key.display().to_string()]);
    other.ok(&["init"]);
    let report = other.json(&[
        "catalog",
        "rebuild",
        "--destination",
        "local",
        "--url",
        &file_url(&dir.join("dest")),
        "--json",
    ]);
    assert_eq!(report["snapshots"], 4, "{report}");
    let rebuilt = other.json(&["snapshots", "bruno", "--json"]);
    let by_id = |id: &str| {
        rebuilt
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(s0)["locked"], true);
    assert_eq!(by_id(s0)["lock_until"], Value::Null);
    assert_eq!(by_id(s1)["locked"], true);
    // The destination keeps the time to the millisecond.
    let rebuilt_until: DateTime<Utc> = by_id(s1)["lock_until"].as_str().unwrap().parse().unwrap();
    assert!(
        (rebuilt_until - until).num_milliseconds().abs() <= 1,
        "{rebuilt_until} {until}"
    );
    assert_eq!(by_id(s2)["locked"], false);
    assert_eq!(by_id(s3)["locked"], false);

    // Found by a rebuild, the destination is read-only: forget is refused there (4).
    let err = other.fails_with(4, &["forget", "bruno", "--keep-last", "1"]);
    assert!(err.contains("read-only"), "{err}");
    other.ok(&["destination", "set", "local", "--read-only", "off"]);
    let forget = other.json(&["forget", "bruno", "--keep-last", "1", "--json"]);
    assert_eq!(keep_reasons(&forget, s0), ["locked"]);
    assert_eq!(keep_reasons(&forget, s1), ["locked"]);
    assert_eq!(forgotten(&forget), set(&[s2]));
    assert_eq!(snapshot_ids(&other, "bruno"), set(&[s0, s1, s3]));
    for (id, expected) in [&snaps[0], &snaps[1], &snaps[3]] {
        restores(&other, dir, "bruno", id, expected, None);
    }
}

// 3. Orphans: listed, reassigned to a new account of the same name, pruned by age.

/// The system clock moved ahead.
#[derive(Debug)]
struct Later(chrono::Duration);

impl Clock for Later {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

/// An owner-key account `olga` backed up twice, removed (its snapshots checked as an orphan
/// and kept by `orphans prune` of 0 and 1 day), made again and given its old snapshots:
/// the state, the original owner key file, the snapshots (with their contents) and the old
/// account id.
fn olga_orphaned_and_reassigned(dir: &Path) -> (Ctl, PathBuf, Vec<(String, PathBuf)>, String) {
    let ctl = setup(dir);
    let key = dir.join("olga.key");
    let k = key.display().to_string();
    ctl.ok(&[
        "account",
        "add",
        "olga",
        "--encryption",
        "remote",
        "--key-out",
        &k,
    ]);
    let mut home = Home::new(dir, "olga");
    let snaps: Vec<(String, PathBuf)> = (0..2)
        .map(|_| backup(&ctl, "olga", &mut home, "local"))
        .collect();
    let stored: u64 = ctl
        .json(&["snapshots", "olga", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stats"]["bytes_stored"].as_u64().unwrap())
        .sum();
    let old_id = account_id(&ctl, "olga");
    ctl.ok(&["account", "remove", "olga", "--yes"]);

    let orphans = ctl.json(&["orphans", "--json"]);
    let list = orphans.as_array().unwrap();
    assert_eq!(list.len(), 1, "{orphans}");
    assert_eq!(list[0]["account"], old_id.as_str());
    assert_eq!(list[0]["username"], "olga");
    assert_eq!(list[0]["snapshots"], 2);
    assert_eq!(list[0]["locked"], 0);
    assert_eq!(list[0]["bytes"], stored);
    assert!(stored > 200_000);
    assert_eq!(list[0]["destinations"], serde_json::json!(["local"]));
    let human = ctl.ok(&["orphans"]);
    assert!(
        human
            .lines()
            .any(|l| l.starts_with(&old_id) && l.contains("olga")),
        "{human}"
    );

    // An orphan TTL of 0 keeps everything; orphans a day old are not a day older.
    let zero = ctl.json(&["orphans", "prune", "--older-than", "0", "--json"]);
    assert!(zero["removed"].as_array().unwrap().is_empty(), "{zero}");
    let out = ctl.ok(&["orphans", "prune", "--older-than", "1"]);
    assert!(out.contains("0 snapshots"), "{out}");
    assert_eq!(ctl.json(&["orphans", "--json"])[0]["snapshots"], 2);

    // A new account of the same username takes the old snapshots; they still open with
    // the original owner key (not the new account's).
    let new_key = dir.join("olga-new.key");
    ctl.ok(&[
        "account",
        "add",
        "olga",
        "--encryption",
        "remote",
        "--key-out",
        &new_key.display().to_string(),
    ]);
    let moved = ctl.json(&["orphans", "reassign", "olga", "--from", &old_id, "--json"]);
    assert_eq!(moved["snapshots"], 2, "{moved}");
    assert_eq!(snapshot_ids(&ctl, "olga"), set(&[&snaps[0].0, &snaps[1].0]));
    (ctl, key, snaps, old_id)
}

/// A reassigned orphan of an owner-key account restores, byte for byte, with the owner
/// key the removed account was made with (and not with the new account's).
#[test]
fn a_reassigned_orphan_restores_with_its_original_owner_key() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (ctl, key, snaps, _) = olga_orphaned_and_reassigned(dir);
    let t = dir.join("wrong-key").display().to_string();
    let new_key = dir.join("olga-new.key").display().to_string();
    let args = [
        "restore",
        "olga",
        "--target",
        &t,
        "--snapshot",
        &snaps[0].0,
        "--key-file",
        &new_key,
    ];
    let err = ctl.fails_with(1, &args);
    assert!(err.contains("key"), "{err}");
    for (id, expected) in &snaps {
        restores(&ctl, dir, "olga", id, expected, Some(&key));
    }
}

/// A key reset of the account shreds the earlier identity whose snapshots it took too:
/// its key envelopes and objects go, and no snapshot of it is left.
#[test]
fn a_key_reset_shreds_a_reassigned_identity() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (ctl, _, _, old_id) = olga_orphaned_and_reassigned(dir);
    let old_prefix = dir.join("dest/accounts").join(&old_id);
    assert!(old_prefix.join("keys").exists());
    let out = dir.join("olga-reset.key").display().to_string();
    ctl.ok(&["account", "reset-key", "olga", "--key-out", &out, "--yes"]);
    assert!(snapshot_ids(&ctl, "olga").is_empty());
    let left = files_below(&old_prefix);
    assert!(left.is_empty(), "{left:?}");
    assert!(
        ctl.json(&["orphans", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_listed_reassigned_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (ctl, key, _, old_id) = olga_orphaned_and_reassigned(dir);
    assert_eq!(ctl.json(&["orphans", "--json"]), serde_json::json!([]));
    assert_eq!(ctl.ok(&["orphans"]).trim(), "no orphans");
    let usage = ctl.json(&["usage", "olga", "--json"]);
    assert_eq!(
        usage["destinations"][0]["usage"]["account"],
        old_id.as_str(),
        "the objects stay under the old identity: {usage}"
    );

    // A second removed account, seen 200 days later (past the default orphan TTL, 180).
    ctl.ok(&["account", "add", "pete"]);
    let mut pete_home = Home::new(dir, "pete");
    backup(&ctl, "pete", &mut pete_home, "local");
    let pete: AccountId = account_id(&ctl, "pete").parse().unwrap();
    ctl.ok(&["account", "remove", "pete", "--yes"]);
    let prefix = dir.join("dest/accounts").join(pete.to_string());
    assert!(!files_below(&prefix).is_empty());

    let home_dir = dir.join("state");
    let catalog = Arc::new(
        SqliteCatalog::open(home_dir.join("catalog.db"))
            .await
            .unwrap(),
    );
    let vault = Arc::new(MasterKeyVault::load(&home_dir).unwrap());
    let later = Server::builder(catalog, vault, Arc::new(UrlResolver::new()))
        .clock(Arc::new(Later(chrono::Duration::days(200))))
        .build();
    let kept = later.prune_orphans(Some(0), false).await.unwrap();
    assert!(kept.removed.is_empty());
    let kept = later.prune_orphans(Some(365), false).await.unwrap();
    assert!(kept.removed.is_empty(), "200 days are not 365");
    let dry = later.prune_orphans(None, true).await.unwrap();
    assert_eq!(dry.older_than_days, 180);
    assert_eq!(dry.removed.len(), 1);
    assert_eq!(dry.removed[0].account, pete);
    assert_eq!(dry.snapshots, 1);
    assert!(
        !files_below(&prefix).is_empty(),
        "a dry run removes nothing"
    );
    let report = later.prune_orphans(None, false).await.unwrap();
    assert_eq!(report.snapshots, 1, "{report:?}");
    assert_eq!(report.prefixes_deleted, 1, "{report:?}");
    // Gone from the catalog (an orphan's rows are its only rows) and from the destination.
    assert!(later.orphans().await.unwrap().is_empty());
    assert_eq!(files_below(&prefix), Vec::<PathBuf>::new());
    drop(later);

    // The reassigned history is not an orphan: it stays, and restores.
    assert_eq!(ctl.json(&["orphans", "--json"]), serde_json::json!([]));
    assert_eq!(snapshot_ids(&ctl, "olga").len(), 2);
    let out = ctl.ok(&[
        "verify",
        "olga",
        "--read-data",
        "--key-file",
        &key.display().to_string(),
    ]);
    assert!(out.contains("ok"), "{out}");
}

// 4. Bad inputs and refusals, with their exit codes.

#[test]
fn bad_inputs_and_refusals_have_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ctl = setup(dir);
    ctl.ok(&["account", "add", "carl"]);
    let mut home = Home::new(dir, "carl");
    let (first, _) = backup(&ctl, "carl", &mut home, "local");
    backup(&ctl, "carl", &mut home, "local");

    // Not found: 1.
    let err = ctl.fails_with(1, &["snapshot", "lock", "carl", "ffffffff"]);
    assert!(err.contains("not found"), "{err}");
    ctl.fails_with(1, &["snapshot", "unlock", "nobody", &first]);
    ctl.fails_with(
        1,
        &["forget", "carl", "--keep-last", "1", "--destination", "x"],
    );
    ctl.fails_with(1, &["prune", "--destination", "nowhere"]);
    ctl.fails_with(1, &["usage", "nobody"]);

    // Invalid input: 2. A count of 0 keeps nothing and is refused (leave the rule unset).
    let err = ctl.fails_with(2, &["forget", "carl", "--keep-last", "0"]);
    assert!(err.contains("keep-last 0"), "{err}");
    ctl.fails_with(2, &["forget", "carl", "--keep-daily", "0", "--dry-run"]);
    ctl.fails_with(2, &["forget", "carl", "--keep-within", "0s"]);
    let err = ctl.fails_with(2, &["forget", "carl", "--keep-within", "a fortnight"]);
    assert!(err.contains("--keep-within"), "{err}");
    let err = ctl.fails_with(
        2,
        &[
            "forget",
            "carl",
            "--keep-daily",
            "7",
            "--time-zone",
            "Mars/Olympus_Mons",
        ],
    );
    assert!(err.contains("Mars/Olympus_Mons"), "{err}");
    let err = ctl.fails_with(2, &["prune", "--grace", "5 parsecs"]);
    assert!(err.contains("--grace") && err.contains("parsecs"), "{err}");
    ctl.fails_with(2, &["prune", "--grace", "5"]);
    ctl.fails_with(2, &["prune", "--repack-below", "150"]);
    ctl.fails_with(2, &["orphans", "reassign", "carl", "--from", "not-an-id"]);
    let carl = account_id(&ctl, "carl");
    ctl.fails_with(2, &["orphans", "reassign", "carl", "--from", &carl]);
    ctl.fails_with(2, &["settings", "set", "orphan-ttl-days", "soon"]);
    assert_eq!(snapshot_ids(&ctl, "carl").len(), 2, "nothing was forgotten");

    // Durations in humantime's forms; the setting round-trips.
    let ok = ctl.json(&[
        "forget",
        "carl",
        "--keep-within",
        "1d 12h",
        "--time-zone",
        "Europe/Berlin",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(decided(&ok, "forget"), BTreeSet::new(), "both are within");
    ctl.ok(&["prune", "--grace", "30m", "--dry-run"]);
    ctl.ok(&["settings", "set", "orphan-ttl-days", "30"]);
    assert_eq!(
        ctl.json(&["settings", "show", "--json"])["orphan_ttl_days"],
        30
    );

    // A read-only destination: refused (4), but a dry run reads it.
    ctl.ok(&["destination", "set", "local", "--read-only", "on"]);
    let err = ctl.fails_with(4, &["prune", "--destination", "local", "--grace", "0s"]);
    assert!(err.contains("read-only"), "{err}");
    ctl.fails_with(4, &["snapshot", "lock", "carl", &first]);
    ctl.fails_with(4, &["forget", "carl", "--keep-last", "1"]);
    ctl.ok(&["prune", "--destination", "local", "--dry-run"]);
    ctl.ok(&["forget", "carl", "--keep-last", "1", "--dry-run"]);
    assert_eq!(snapshot_ids(&ctl, "carl").len(), 2);
}

/// `backupctl backup` takes on-demand snapshots unless told `--kind scheduled`: the keep
/// rules leave them to the on-demand cap, which `--keep-on-demand` sets.
#[test]
fn on_demand_snapshots_follow_the_on_demand_cap() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ctl = setup(dir);
    ctl.ok(&["account", "add", "dora"]);
    let mut home = Home::new(dir, "dora");
    let mut ids = Vec::new();
    for _ in 0..3 {
        home.change();
        let snap = ctl.json(&[
            "backup",
            "dora",
            "--source",
            &home.path(),
            "--destination",
            "local",
            "--json",
        ]);
        assert_eq!(snap["kind"], "on_demand");
        ids.push(snap["id"].as_str().unwrap().to_owned());
    }
    let dry = ctl.json(&["forget", "dora", "--keep-last", "1", "--dry-run", "--json"]);
    assert!(decided(&dry, "forget").is_empty(), "{dry}");
    assert_eq!(keep_reasons(&dry, &ids[0]), ["on_demand"]);
    let human = ctl.ok(&["forget", "dora", "--keep-last", "1", "--dry-run"]);
    assert!(human.contains("--keep-on-demand"), "{human}");
    let capped = ctl.json(&["forget", "dora", "--keep-on-demand", "1", "--json"]);
    assert_eq!(forgotten(&capped), set(&[&ids[0], &ids[1]]));
    let reasons: BTreeSet<&str> = capped["destinations"][0]["decision"]["forget"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, BTreeSet::from(["on_demand_cap"]));
    assert_eq!(snapshot_ids(&ctl, "dora"), set(&[&ids[2]]));
}

// 5. The same collection on S3 and SFTP.

#[test]
#[ignore = "needs the test servers (scripts/test-servers)"]
fn forget_and_prune_on_s3_and_sftp() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ctl = Ctl::new(&dir.join("state"));
    ctl.ok(&["init"]);
    ctl.ok(&["destination", "add", "s3", &s3_url("retention")]);
    ctl.ok(&["destination", "add", "sftp", &sftp_url("retention")]);
    ctl.ok(&["account", "add", "erin"]);
    let mut home = Home::new(dir, "erin");
    let mut snaps: Vec<(&str, String, PathBuf)> = Vec::new();
    for _ in 0..3 {
        for destination in ["s3", "sftp"] {
            let (id, expected) = backup(&ctl, "erin", &mut home, destination);
            snaps.push((destination, id, expected));
        }
    }
    let forget = ctl.json(&["forget", "erin", "--keep-last", "1", "--json"]);
    assert_eq!(forget["destinations"].as_array().unwrap().len(), 2);
    let newest: Vec<&(&str, String, PathBuf)> = snaps[4..].iter().collect();
    let old: BTreeSet<String> = snaps[..4].iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(forgotten(&forget), old, "two forgotten on each");
    assert_eq!(
        snapshot_ids(&ctl, "erin"),
        newest.iter().map(|(_, id, _)| id.clone()).collect()
    );
    let run = ctl.json(&["prune", "--grace", "0s", "--json"]);
    assert!(run["problems"].as_array().unwrap().is_empty(), "{run}");
    for destination in ["s3", "sftp"] {
        let deleted: u64 = run["reports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| pair[0] == destination)
            .map(|pair| pair[1]["deleted_bytes"].as_u64().unwrap())
            .sum();
        assert!(deleted > 200_000, "{destination}: {run}");
    }
    for (destination, id, expected) in newest {
        restores(&ctl, dir, "erin", id, expected, None);
        let usage = ctl.json(&["usage", "erin", "--json"]);
        let on = usage["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == *destination)
            .unwrap()
            .clone();
        assert_eq!(
            on["usage"]["unreferenced_bytes"], 0,
            "{destination}: {usage}"
        );
    }
    let out = ctl.ok(&["verify", "erin", "--read-data"]);
    assert!(out.contains("ok"), "{out}");
}
