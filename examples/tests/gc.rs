//! Garbage collection through the engine (`engine::prune`, `engine::storage_usage`) on an
//! in-memory repository: what it deletes and repacks, that it needs no content key, that it
//! defers to a backup holding the account's lease, that backups and collections of one
//! account interleaved for many seeded rounds lose no recorded snapshot, and that a prune or
//! a backup killed at any store call leaves a repository the next prune finishes.
//!
//! `GC_RACE_ROUNDS` sets the rounds of the race test (see [`DEFAULT_RACE_ROUNDS`]) and
//! `GC_RACE_SEED` its seed.

mod gc_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use backup_core::engine::{self, DEFAULT_GRACE, PruneReport};
use backup_core::model::{EncryptionMode, Snapshot, SnapshotId};
use backup_core::repo::References;
use backup_storage::{FaultPlan, FaultStore};
use chrono::Utc;
use gc_support::*;
use object_store::ObjectStore;
use object_store::memory::InMemory;

const ZERO: chrono::Duration = chrono::Duration::zero();

/// Rounds of the race test under plain `cargo test`: the 1,000 rounds take about
/// 80 s in a debug build on two cores (restoring every recorded snapshot after each round),
/// past this suite's budget, so the project's test script runs it with
/// `GC_RACE_ROUNDS=1000`.
const DEFAULT_RACE_ROUNDS: usize = 400;

/// A snapshot and the tree it was taken of.
type Recorded = BTreeMap<SnapshotId, (Snapshot, TreeState)>;

async fn assert_all_restore(
    reader: &backup_core::repo::AccountRepo,
    recorded: &Recorded,
    context: &str,
) {
    for (snap, expected) in recorded.values() {
        assert_restores(reader, snap, expected, context).await;
    }
}

/// Adds two files, changes one and deletes one (of the older ones).
fn churn(live: &Live, rng: &mut Rng, round: usize) {
    let old: Vec<String> = live.state().files.into_keys().collect();
    live.write(&format!("r{round}/a.bin"), &rng.bytes_in(5_000..55_000));
    live.write(&format!("r{round}-b.txt"), &rng.text_in(2_000..32_000));
    if !old.is_empty() {
        let changed = rng.pick(&old).clone();
        live.write(&changed, &rng.bytes_in(3_000..43_000));
        let gone: Vec<&String> = old.iter().filter(|p| **p != changed).collect();
        if !gone.is_empty() {
            live.remove(gone[rng.below(gone.len())]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_snapshots_are_collected_and_the_rest_restore() {
    let f = Fixture::new("basics", EncryptionMode::ServerKey, small_config()).await;
    let live = Live::new();
    let mut rng = Rng::new(1);
    for i in 0..8 {
        live.write(&format!("base/f{i}"), &rng.bytes_in(5_000..40_000));
    }
    let mut snaps = Vec::new();
    for round in 0..5 {
        churn(&live, &mut rng, round);
        snaps.push((f.backup(&live).await, live.state()));
    }
    for i in [0, 1, 3] {
        f.forget(snaps[i].0.id).await;
    }
    let kept: Recorded = [2, 4]
        .into_iter()
        .map(|i| (snaps[i].0.id, snaps[i].clone()))
        .collect();
    let collector = f.collector();
    let (_, bytes_before) = packs(&collector).await;

    let report = f.prune(ZERO, engine::DEFAULT_REPACK_BELOW).await;
    assert_eq!(report.snapshots, 2);
    assert!(report.deleted_packs > 0, "{report:?}");
    assert!(report.deletion_deferred.is_none(), "{report:?}");
    assert!(report.missing_packs.is_empty(), "{report:?}");
    assert_eq!(
        report.waiting_packs, 0,
        "grace 0: every condemned pack is due"
    );
    let (_, bytes_after) = packs(&collector).await;
    assert!(
        bytes_after < bytes_before,
        "{bytes_after} >= {bytes_before}"
    );
    assert_eq!(
        bytes_before - bytes_after + report.repacked_into_bytes,
        report.deleted_bytes
    );
    let usage = engine::storage_usage(&collector).await.unwrap();
    assert_eq!(usage.unreferenced_bytes, 0, "{usage:?}");
    assert_eq!(
        snapshot_ids(&collector).await,
        kept.keys().copied().collect()
    );
    let reader = f.reader();
    assert_all_restore(&reader, &kept, "after prune with grace 0").await;
    assert_verifies(&reader, "after prune with grace 0").await;

    // With the default grace, unreferenced packs are condemned first and deleted a day on.
    let (third, _) = &snaps[2];
    f.forget(third.id).await;
    let kept: Recorded = [(snaps[4].0.id, snaps[4].clone())].into_iter().collect();
    let (packs_before, bytes_before) = packs(&collector).await;
    let now = Utc::now();
    let at = |now| engine::PruneOptions {
        grace: DEFAULT_GRACE,
        repack_below: 0.0,
        dry_run: false,
        now,
        ..Default::default()
    };
    let first = engine::prune(&collector, &at(now)).await.unwrap();
    assert!(first.condemned_packs > 0, "{first:?}");
    assert_eq!(first.deleted_packs, 0, "{first:?}");
    assert_eq!(first.waiting_packs, first.condemned_packs, "{first:?}");
    assert_eq!(
        packs(&collector).await.0,
        packs_before,
        "nothing deleted within the grace"
    );
    let state = collector.load_collection_state().await.unwrap();
    assert_eq!(state.condemned.len() as u64, first.condemned_packs);
    let due = (now + DEFAULT_GRACE).timestamp_millis();
    assert!(
        state
            .condemned
            .values()
            .all(|c| c.due.timestamp_millis() == due)
    );

    let again = engine::prune(&collector, &at(now + chrono::Duration::hours(1)))
        .await
        .unwrap();
    assert_eq!(
        (again.condemned_packs, again.deleted_packs),
        (0, 0),
        "{again:?}"
    );

    let later = now + chrono::Duration::days(2);
    let dry = engine::prune(
        &collector,
        &engine::PruneOptions {
            dry_run: true,
            ..at(later)
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.deleted_packs, first.condemned_packs, "{dry:?}");
    assert_eq!(
        packs(&collector).await.0,
        packs_before,
        "a dry run deletes nothing"
    );

    let second = engine::prune(&collector, &at(later)).await.unwrap();
    assert_eq!(second.deleted_packs, first.condemned_packs, "{second:?}");
    assert_eq!(second.deleted_bytes, first.condemned_bytes, "{second:?}");
    assert_eq!(second.waiting_packs, 0, "{second:?}");
    let (_, bytes_after) = packs(&collector).await;
    assert_eq!(bytes_before - bytes_after, first.condemned_bytes);
    assert!(
        collector
            .load_collection_state()
            .await
            .unwrap()
            .condemned
            .is_empty()
    );
    assert_all_restore(&reader, &kept, "after the grace").await;
    assert_verifies(&reader, "after the grace").await;
}

/// Four backups into packs of 1 MiB (one packing thread, so the layout is fixed), the first
/// two forgotten:
/// 1. twelve files of 64 KiB (twelve single blobs): pack A;
/// 2. thirty files of 2 KB of text (one group: an incompressible group would be stored as
///    single blobs) and ten more of 64 KiB: pack B;
/// 3. all but one file of each set deleted: A is 1/12 live, B only by its group;
/// 4. one small file added.
struct RepackScenario {
    f: Fixture,
    live: Live,
    kept: Recorded,
    forgotten: Vec<SnapshotId>,
}

async fn repack_scenario(name: &str, mode: EncryptionMode) -> RepackScenario {
    let f = Fixture::new(name, mode, single_blob_config(1 << 20)).await;
    let live = Live::new();
    let mut rng = Rng::new(2);
    for i in 0..12 {
        live.write(&format!("big/b{i}"), &rng.bytes(64 * 1024));
    }
    let first = f.backup(&live).await;
    for i in 0..30 {
        live.write(&format!("small/s{i}"), &rng.text(2_000));
    }
    for i in 0..10 {
        live.write(&format!("more/c{i}"), &rng.bytes(64 * 1024));
    }
    let second = f.backup(&live).await;
    for i in 1..12 {
        live.remove(&format!("big/b{i}"));
    }
    for i in 1..30 {
        live.remove(&format!("small/s{i}"));
    }
    live.remove("more");
    let mut kept = Recorded::new();
    let third = f.backup(&live).await;
    kept.insert(third.id, (third, live.state()));
    live.write("small/n0", &rng.text(3_000));
    let fourth = f.backup(&live).await;
    kept.insert(fourth.id, (fourth, live.state()));
    for s in [&first, &second] {
        f.forget(s.id).await;
    }
    RepackScenario {
        f,
        live,
        kept,
        forgotten: vec![first.id, second.id],
    }
}

/// Prunes the scenario (grace 0, threshold 0.5) with the server's handle only and checks the
/// report against the repack decisions worked out from the trailers, then the result.
async fn prune_and_check_repack(s: &RepackScenario) -> (PruneReport, RepackPlan) {
    let collector = s.f.collector();
    let plan = expected_repack(&collector, 0.5).await;
    let (packs_before, bytes_before) = packs(&collector).await;
    // A dry run foresees the same and changes nothing.
    let dry = engine::prune(
        &collector,
        &engine::PruneOptions {
            dry_run: true,
            ..options(ZERO, 0.5)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (dry.repacked_packs, dry.repack_skipped),
        (plan.repack.len() as u64, plan.skip.len() as u64),
        "{dry:?} {plan:?}"
    );
    assert_eq!(
        packs(&collector).await,
        (packs_before.clone(), bytes_before)
    );
    assert!(
        collector
            .load_collection_state()
            .await
            .unwrap()
            .condemned
            .is_empty()
    );
    let report = s.f.prune(ZERO, 0.5).await;
    assert_eq!(
        report.repacked_packs,
        plan.repack.len() as u64,
        "{report:?} {plan:?}"
    );
    assert_eq!(
        report.repack_skipped,
        plan.skip.len() as u64,
        "{report:?} {plan:?}"
    );
    if !plan.repack.is_empty() {
        assert_eq!(
            report.rewritten_snapshots,
            s.kept.len() as u64,
            "{report:?}"
        );
    }
    let (packs_after, bytes_after) = packs(&collector).await;
    assert!(bytes_after < bytes_before);
    for p in &plan.repack {
        assert!(!packs_after.contains(p), "repacked pack {p} is still there");
    }
    for p in &plan.skip {
        assert!(packs_after.contains(p), "skipped pack {p} was deleted");
    }
    assert!(packs_after.len() < packs_before.len());
    // No snapshot names a pack that is gone, nothing is left unreferenced.
    let live = live_entries(&collector).await;
    assert!(live.keys().all(|p| packs_after.contains(p)), "{live:?}");
    let usage = engine::storage_usage(&collector).await.unwrap();
    assert_eq!(usage.unreferenced_bytes, 0, "{usage:?}");
    assert_eq!(
        snapshot_ids(&collector).await,
        s.kept.keys().copied().collect()
    );
    let reader = s.f.reader();
    assert_all_restore(&reader, &s.kept, "after repack").await;
    assert_verifies(&reader, "after repack").await;
    // The index names the new packs: backing up the same tree again stores nothing.
    let again = s.f.backup(&s.live).await;
    assert_eq!(again.stats.packs_written, 0, "{:?}", again.stats);
    (report, plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mostly_dead_packs_of_a_plain_account_are_repacked() {
    let s = repack_scenario("plainrepack", EncryptionMode::None).await;
    let (report, plan) = prune_and_check_repack(&s).await;
    // Both data packs, the one whose only live blob is in a group included: an unsealed
    // group moves whole.
    assert!(plan.repack.len() >= 2 && plan.skip.is_empty(), "{plan:?}");
    assert!(
        report.repacked_packs >= 2 && report.rewritten_snapshots == 2,
        "{report:?}"
    );
    assert!(
        report.repacked_into_bytes < report.repacked_bytes / 4,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_packs_repack_single_blobs_and_skip_sealed_groups() {
    let s = repack_scenario("sealedrepack", EncryptionMode::ServerKey).await;
    let (report, plan) = prune_and_check_repack(&s).await;
    // Pack A (single blobs) is repacked; pack B, live only through a sealed group, is not.
    assert_eq!((plan.repack.len(), plan.skip.len()), (1, 1), "{plan:?}");
    assert_eq!(
        (report.repacked_packs, report.repack_skipped),
        (1, 1),
        "{report:?}"
    );
    // Skipped again on the next run, and nothing else to do.
    let next = s.f.prune(ZERO, 0.5).await;
    assert_eq!(
        (next.repacked_packs, next.repack_skipped, next.deleted_packs),
        (0, 1, 0),
        "{next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_key_account_is_collected_without_the_owner_key() {
    let s = repack_scenario("ownerkey", EncryptionMode::OwnerKey).await;
    assert!(s.f.owner_key.is_some());
    // The collector's handle cannot read content.
    let collector = s.f.collector();
    let (snap, _) = s.kept.values().next().unwrap();
    assert!(
        restore(&collector, snap).await.is_err(),
        "the collector's handle must hold no content key"
    );
    let (report, plan) = prune_and_check_repack(&s).await;
    assert_eq!((plan.repack.len(), plan.skip.len()), (1, 1), "{plan:?}");
    assert!(report.deleted_packs > 0, "{report:?}");
    assert!(s.forgotten.iter().all(|id| !s.kept.contains_key(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_holding_the_account_lease_defers_deletion() {
    let f = Fixture::new("leased", EncryptionMode::ServerKey, small_config()).await;
    let live = Live::new();
    let mut rng = Rng::new(4);
    for i in 0..6 {
        live.write(&format!("f{i}"), &rng.bytes(20_000));
    }
    let mut recorded = Recorded::new();
    let first = f.backup(&live).await;
    recorded.insert(first.id, (first, live.state()));
    // X is stored by the second backup only, in packs of its own.
    let x = rng.bytes(150_000);
    live.write("x.bin", &x);
    let with_x = f.backup(&live).await;
    live.remove("x.bin");
    let third = f.backup(&live).await;
    recorded.insert(third.id, (third, live.state()));
    f.forget(with_x.id).await;
    let collector = f.collector();
    let (packs_before, _) = packs(&collector).await;

    let ttl = Duration::from_secs(60);
    let lease = f
        .repo
        .acquire_lease(f.account.id, "backup", ttl, Duration::ZERO)
        .await
        .unwrap();
    let report = f.prune(ZERO, 0.5).await;
    assert!(report.condemned_packs > 0, "{report:?}");
    let why = report
        .deletion_deferred
        .clone()
        .expect("deletion must wait for the backup");
    assert!(why.contains("backup"), "{why}");
    assert_eq!(report.deleted_packs, 0, "{report:?}");
    assert!(packs(&collector).await.0.is_superset(&packs_before));
    let condemned: BTreeSet<_> = collector
        .load_collection_state()
        .await
        .unwrap()
        .condemned
        .into_keys()
        .collect();
    assert!(!condemned.is_empty());

    // A backup under that lease, after the condemnation, stores X again rather than reuse
    // the condemned packs that hold it.
    live.write("x.bin", &x);
    let under_lease = f.backup(&live).await;
    assert!(under_lease.stats.chunks_new > 0, "{:?}", under_lease.stats);
    let References::Packs(refs) = collector
        .load_snapshot_header(under_lease.id)
        .await
        .unwrap()
    else {
        panic!("pack references expected");
    };
    assert!(
        refs.iter().all(|r| !condemned.contains(&r.pack)),
        "a condemned pack was reused"
    );
    recorded.insert(under_lease.id, (under_lease, live.state()));
    let still = f.prune(ZERO, 0.5).await;
    assert!(
        still.deletion_deferred.is_some() && still.deleted_packs == 0,
        "{still:?}"
    );
    lease.release().await.unwrap();

    let after = f.prune(ZERO, 0.5).await;
    assert!(after.deletion_deferred.is_none(), "{after:?}");
    assert!(after.deleted_packs >= condemned.len() as u64, "{after:?}");
    let (packs_after, _) = packs(&collector).await;
    assert!(packs_after.is_disjoint(&condemned));
    let usage = engine::storage_usage(&collector).await.unwrap();
    assert_eq!(usage.unreferenced_bytes, 0, "{usage:?}");
    let reader = f.reader();
    assert_all_restore(&reader, &recorded, "after the lease was released").await;
    assert_verifies(&reader, "after the lease was released").await;
}

/// A repository where some packs hold only the blobs of a forgotten snapshot (the file
/// `x.bin`), and a live tree that holds `x.bin` again: a backup finds its blobs in those
/// packs.
struct Interleaving {
    f: Fixture,
    live: Live,
    recorded: Recorded,
    x_packs: BTreeSet<backup_core::model::PackId>,
}

async fn interleaving(name: &str) -> Interleaving {
    let f = Fixture::new(name, EncryptionMode::ServerKey, small_config()).await;
    let live = Live::new();
    let mut rng = Rng::new(9);
    live.write("a.bin", &rng.bytes(30_000));
    let mut recorded = Recorded::new();
    let first = f.backup(&live).await;
    recorded.insert(first.id, (first, live.state()));
    let x = rng.bytes(100_000);
    live.write("x.bin", &x);
    let with_x = f.backup(&live).await;
    live.remove("x.bin");
    let third = f.backup(&live).await;
    recorded.insert(third.id, (third, live.state()));
    f.forget(with_x.id).await;
    let collector = f.collector();
    let referenced: BTreeSet<_> = live_entries(&collector).await.into_keys().collect();
    let x_packs: BTreeSet<_> = packs(&collector)
        .await
        .0
        .difference(&referenced)
        .copied()
        .collect();
    assert!(!x_packs.is_empty());
    live.write("x.bin", &x);
    Interleaving {
        f,
        live,
        recorded,
        x_packs,
    }
}

/// Runs a prune (grace 0) held right after it found the account's lease free (at its second
/// listing of the snapshots); then a backup that takes the lease, held at the call
/// `backup_rule` picks; lets the prune finish, then the backup.
async fn backup_during_deletion(
    s: &Interleaving,
    backup_rule: GateRule,
) -> (backup_core::Result<Snapshot>, PruneReport) {
    let limit = Duration::from_secs(20);
    let collector_gate = GateStore::new(
        s.f.mem.clone(),
        GateRule {
            op: "list",
            path: "/snapshots".into(),
            contains: false,
            nth: 2,
        },
    );
    let backup_gate = GateStore::new(s.f.mem.clone(), backup_rule);
    let collector_repo = s.f.repo_over(Arc::new(collector_gate.clone())).await;
    let backup_repo = s.f.repo_over(Arc::new(backup_gate.clone())).await;
    let collector = s.f.collector_on(&collector_repo);
    let prune = tokio::spawn(async move { engine::prune(&collector, &options(ZERO, 0.0)).await });
    tokio::time::timeout(limit, collector_gate.reached())
        .await
        .expect("the prune goes on to delete");
    let writer = s.f.collector_on(&backup_repo);
    let backup = async {
        let lease = backup_repo
            .acquire_lease(s.f.account.id, "backup", limit, Duration::ZERO)
            .await?;
        let result = s.f.backup_with(&writer, &s.live).await;
        lease.release().await?;
        result
    };
    let driver = async {
        tokio::time::timeout(limit, backup_gate.reached())
            .await
            .expect("the backup reaches the chosen call");
        collector_gate.release();
        let report = prune.await.unwrap().unwrap();
        backup_gate.release();
        report
    };
    tokio::join!(backup, driver)
}

/// The backup takes the lease after the collector saw it free, lists the packs (those of
/// `x.bin` among them, condemned and due), and reads the collector's state only after the
/// collector deleted them and dropped them from its state: the backup's exclusion of
/// condemned packs must still keep it from naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_never_names_packs_deleted_while_it_started() {
    let s = interleaving("deletedreuse").await;
    let rule = GateRule {
        op: "get",
        path: "/collection".into(),
        contains: false,
        nth: 1,
    };
    let (backed_up, report) = backup_during_deletion(&s, rule).await;
    assert!(
        report.deletion_deferred.is_none() && report.deleted_packs > 0,
        "{report:?}"
    );
    let reader = s.f.reader();
    let (present, _) = packs(&reader).await;
    assert!(
        present.is_disjoint(&s.x_packs),
        "x.bin's packs were deleted"
    );
    let snap = backed_up.expect("the backup commits");
    let References::Packs(refs) = reader.load_snapshot_header(snap.id).await.unwrap() else {
        panic!("pack references expected");
    };
    let gone: Vec<_> = refs
        .iter()
        .map(|r| r.pack)
        .filter(|p| !present.contains(p))
        .collect();
    assert!(
        gone.is_empty(),
        "snapshot {} names pack(s) {gone:?} that the collector deleted while the backup \
         started (it reused x.bin's blobs from them): x.bin is lost",
        snap.id
    );
    let mut recorded = s.recorded.clone();
    recorded.insert(snap.id, (snap, s.live.state()));
    assert_all_restore(&reader, &recorded, "backup during deletion").await;
    assert_verifies(&reader, "backup during deletion").await;
}

/// The backup takes the lease after the collector saw it free and lists the index objects;
/// the collector then deletes packs and replaces the indexes; the backup goes on to read
/// the indexes it listed. Backups run while an account is collected: it must succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_survives_the_collector_replacing_the_indexes_it_listed() {
    let s = interleaving("indexswap").await;
    let rule = GateRule {
        op: "get",
        path: "/index/".into(),
        contains: true,
        nth: 1,
    };
    let (backed_up, report) = backup_during_deletion(&s, rule).await;
    assert!(report.indexes_replaced > 0, "{report:?}");
    let snap = backed_up.unwrap_or_else(|e| {
        panic!("a backup holding the account's lease failed because a collector replaced the indexes it had listed: {e}")
    });
    let mut recorded = s.recorded.clone();
    recorded.insert(snap.id, (snap, s.live.state()));
    let reader = s.f.reader();
    assert_all_restore(&reader, &recorded, "backup during index replacement").await;
    assert_verifies(&reader, "backup during index replacement").await;
}

/// One random change to the race's tree: a file added (new bytes or bytes used before, so
/// that backups find blobs of old, maybe condemned, packs), changed, renamed or deleted, a
/// directory added or removed. The tree stays a handful of files.
fn mutate(live: &Live, rng: &mut Rng, pool: &mut Vec<Vec<u8>>, counter: &mut u64) {
    let mut content = |rng: &mut Rng| -> Vec<u8> {
        if !pool.is_empty() && rng.chance(25) {
            return rng.pick(pool).clone();
        }
        let data = match rng.below(10) {
            0..=3 => rng.bytes_in(0..3_000),
            4..=6 => rng.text_in(1_000..31_000),
            // One single blob, or a single blob and a group member.
            7 => rng.bytes(64 * 1024),
            _ => rng.bytes_in(64 * 1024 + 1..130_000),
        };
        if pool.len() < 40 {
            pool.push(data.clone());
        } else {
            let i = rng.below(pool.len());
            pool[i] = data.clone();
        }
        data
    };
    for _ in 0..1 + rng.below(3) {
        let state = live.state();
        let files: Vec<String> = state.files.keys().cloned().collect();
        let dirs: Vec<String> = state.dirs.iter().cloned().collect();
        *counter += 1;
        let n = *counter;
        match rng.below(12) {
            0..=3 if files.len() < 7 => {
                let dir = if !dirs.is_empty() && rng.chance(50) {
                    format!("{}/", rng.pick(&dirs))
                } else if rng.chance(30) {
                    format!("d{n}/")
                } else {
                    String::new()
                };
                live.write(&format!("{dir}f{n}"), &content(rng));
            }
            4..=6 if !files.is_empty() => {
                let path = rng.pick(&files).clone();
                let mut data = state.files[&path].clone();
                if rng.chance(50) || data.is_empty() {
                    data = content(rng);
                } else {
                    // A few bytes changed in place: most chunks stay the same.
                    let at = rng.below(data.len());
                    data[at] ^= 0x5a;
                }
                live.write(&path, &data);
            }
            7 if !files.is_empty() => {
                let from = rng.pick(&files).clone();
                live.write(&format!("moved{n}"), &state.files[&from]);
                live.remove(&from);
            }
            8..=9 if files.len() > 1 => live.remove(&rng.pick(&files).clone()),
            10 if !dirs.is_empty() => live.remove(&rng.pick(&dirs).clone()),
            11 => live.mkdir(&format!("empty{n}")),
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
struct RaceTally {
    backups: u64,
    prunes: u64,
    forgets: u64,
    deleted: u64,
    repacked: u64,
    skipped: u64,
    revived: u64,
    deferred: u64,
    failures: Vec<String>,
}

/// The race suite: backups and collection of one account interleaved (in-process,
/// seeded); after each round every recorded snapshot restores byte for byte.
///
/// Each round changes the tree, then runs side by side a backup under the account's lease
/// (recorded only once it returned Ok) and, under the collection lease, sometimes a forget
/// of a recorded snapshot (dropped from the record first) and a prune (grace 0 or a few
/// milliseconds, a random repack threshold). The store adds random latency. Verification
/// with every pack read runs every 50 rounds and at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_and_collection_interleaved_keep_every_recorded_snapshot() {
    let rounds: usize = std::env::var("GC_RACE_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("GC_RACE_ROUNDS: a number"))
        .unwrap_or(DEFAULT_RACE_ROUNDS);
    let seed: u64 = std::env::var("GC_RACE_SEED")
        .ok()
        .map(|v| v.parse().expect("GC_RACE_SEED: a number"))
        .unwrap_or(0x6c0c_2025);
    let mem = Arc::new(InMemory::new());
    let latency = Arc::new(LatencyStore::new(mem.clone(), seed));
    let f = Fixture::over(
        mem,
        latency.clone(),
        "racer",
        EncryptionMode::ServerKey,
        single_blob_config(96 * 1024),
    )
    .await;
    let writer = f.collector();
    let collector = f.collector();
    let reader = f.clean_reader().await;
    let live = Live::new();
    let mut rng = Rng::new(seed);
    let (mut pool, mut counter) = (Vec::new(), 0u64);
    let mut recorded = Recorded::new();
    let mut tally = RaceTally::default();
    let ttl = Duration::from_secs(120);
    let started = std::time::Instant::now();

    for round in 0..rounds {
        let context = format!("round {round} (seed {seed})");
        mutate(&live, &mut rng, &mut pool, &mut counter);
        let expected = live.state();
        // Two forgets when the record is long, else one now and then.
        let count = if recorded.len() > 6 {
            2
        } else {
            usize::from(rng.chance(30))
        };
        let mut forget = Vec::new();
        for _ in 0..count.min(recorded.len()) {
            let ids: Vec<SnapshotId> = recorded.keys().copied().collect();
            let id = *rng.pick(&ids);
            recorded.remove(&id);
            forget.push(id);
        }
        let grace = chrono::Duration::milliseconds(*rng.pick(&[0, 0, 0, 2, 20, 200]));
        let below = *rng.pick(&[0.0, 0.25, 0.5, 0.75, 1.0]);
        // Either starts first, by a little or by most of the other's run.
        let mut start_delay = || {
            let spread = if rng.chance(50) { 3_000 } else { 40_000 };
            Duration::from_micros(rng.below(spread) as u64)
        };
        let (backup_delay, collect_delay) = (start_delay(), start_delay());

        let backup = async {
            tokio::time::sleep(backup_delay).await;
            let lease = f
                .repo
                .acquire_lease(f.account.id, "backup", ttl, ttl)
                .await?;
            let result = f.backup_with(&writer, &live).await;
            lease.release().await?;
            result
        };
        let collect = async {
            tokio::time::sleep(collect_delay).await;
            let lease = f
                .repo
                .acquire_collection_lease(f.account.id, "prune", ttl, ttl)
                .await?;
            let result = async {
                for &id in &forget {
                    assert!(
                        collector.delete_snapshot_object(id).await?,
                        "{id} was there"
                    );
                }
                engine::prune(&collector, &options(grace, below)).await
            }
            .await;
            lease.release().await?;
            result
        };
        let (backed_up, collected) = tokio::join!(backup, collect);

        latency.set_enabled(false);
        tally.backups += 1;
        tally.prunes += 1;
        tally.forgets += forget.len() as u64;
        let new_snapshot = backed_up.as_ref().ok().map(|s| s.id);
        match backed_up {
            Ok(snap) => {
                recorded.insert(snap.id, (snap, expected));
            }
            Err(e) => tally
                .failures
                .push(format!("{context}: backup failed: {e}")),
        }
        match collected {
            Ok(r) => {
                if !r.missing_packs.is_empty() {
                    tally.failures.push(format!(
                        "{context}: the prune found packs {:?} named but missing",
                        r.missing_packs
                    ));
                }
                tally.deleted += r.deleted_packs;
                tally.repacked += r.repacked_packs;
                tally.skipped += r.repack_skipped;
                tally.revived += r.revived_packs;
                tally.deferred += u64::from(r.deletion_deferred.is_some());
            }
            Err(e) => tally.failures.push(format!("{context}: prune failed: {e}")),
        }
        assert_eq!(
            snapshot_ids(&reader).await,
            recorded.keys().copied().collect(),
            "{context}: the snapshot objects are not the recorded ones"
        );
        // The signature of data loss: a snapshot names a pack that is gone.
        let (present, _) = packs(&reader).await;
        let mut named_but_gone = Vec::new();
        for id in recorded.keys() {
            if let References::Packs(refs) = reader.load_snapshot_header(*id).await.unwrap() {
                named_but_gone.extend(
                    refs.iter()
                        .filter(|r| !present.contains(&r.pack))
                        .map(|r| (*id, r.pack)),
                );
            }
        }
        assert!(
            named_but_gone.is_empty(),
            "{context}: (snapshot, pack) {named_but_gone:?}: deleted packs still named \
             (this round's backup: {new_snapshot:?}, forgotten: {forget:?}, grace {grace}, \
             repack below {below})"
        );
        assert_all_restore(&reader, &recorded, &context).await;
        if (round + 1) % 50 == 0 {
            assert_verifies(&reader, &context).await;
        }
        latency.set_enabled(true);
    }

    latency.set_enabled(false);
    // Past the longest grace of the rounds: every condemned pack is due.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let last = prune_now(&collector, ZERO, 0.5).await;
    assert!(last.deletion_deferred.is_none(), "{last:?}");
    let usage = engine::storage_usage(&collector).await.unwrap();
    assert_eq!(usage.unreferenced_bytes, 0, "{usage:?}");
    assert_all_restore(&reader, &recorded, "after the last prune").await;
    assert_verifies(&reader, "after the last prune").await;
    eprintln!(
        "gc race: {rounds} rounds (seed {seed}) in {:.1} s: {tally:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        tally.failures.is_empty(),
        "{} steps failed while backups and collection interleaved: {:#?}",
        tally.failures.len(),
        tally.failures
    );
    if rounds >= 100 {
        assert!(
            tally.deleted > 0 && tally.deferred > 0,
            "the race did not exercise deletion: {tally:?}"
        );
    }
}

type Faulty = FaultStore<Arc<dyn ObjectStore>>;

/// The store calls opening a repository makes (they come before the calls under test).
async fn calls_to_open(f: &Fixture) -> u64 {
    let counting = Arc::new(Faulty::new(f.mem.clone(), FaultPlan::Never));
    f.repo_over(counting.clone()).await;
    counting.calls()
}

/// The scenario's repository after `prune_then` was killed at call `n`, then a clean prune:
/// every kept snapshot restores, verify reads every pack, nothing is unreferenced and the
/// packs are those one clean prune leaves.
async fn prune_killed_at_every_call(mode: EncryptionMode, lost_responses: bool) {
    let s = repack_scenario("killedprune", mode).await;
    let plan = expected_repack(&s.f.collector(), 0.5).await;
    assert!(
        !plan.repack.is_empty(),
        "the scenario has repack candidates"
    );
    let reference = s.f.fork().await;
    reference.prune(ZERO, 0.5).await;
    let (reference_packs, _) = packs(&reference.collector()).await;
    let open = calls_to_open(&s.f).await;
    let mut silent = Vec::new();
    let mut n = 1;
    loop {
        let copy = s.f.fork().await;
        let faulty = Arc::new(
            Faulty::new(copy.mem.clone(), FaultPlan::Nth(open + n))
                .with_lost_responses(lost_responses),
        );
        let repo = copy.repo_over(faulty.clone()).await;
        let result = engine::prune(&copy.collector_on(&repo), &options(ZERO, 0.5)).await;
        if faulty.injected() == 0 {
            let report = result.unwrap();
            assert!(
                report.deleted_packs > 0 && report.repacked_packs > 0,
                "{report:?}"
            );
            break;
        }
        if result.is_ok() {
            silent.push(n);
        }
        let context = format!("prune killed at call {n} (lost responses: {lost_responses})");
        let clean = copy.prune(ZERO, 0.5).await;
        assert!(clean.missing_packs.is_empty(), "{context}: {clean:?}");
        let collector = copy.collector();
        assert_eq!(
            snapshot_ids(&collector).await,
            s.kept.keys().copied().collect(),
            "{context}"
        );
        let usage = engine::storage_usage(&collector).await.unwrap();
        assert_eq!(usage.unreferenced_bytes, 0, "{context}: {usage:?}");
        assert_eq!(packs(&collector).await.0, reference_packs, "{context}");
        let reader = copy.reader();
        assert_all_restore(&reader, &s.kept, &context).await;
        assert_verifies(&reader, &context).await;
        n += 1;
        assert!(n < 2_000, "the prune never got past the failing call");
    }
    eprintln!(
        "{mode:?} prune (lost responses: {lost_responses}) killed at each of its {} calls",
        n - 1
    );
    assert!(n > 10, "the prune made only {n} calls");
    assert!(
        silent.is_empty(),
        "prune reported success although call(s) {silent:?} failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_killed_at_every_call_is_finished_by_the_next_prune() {
    prune_killed_at_every_call(EncryptionMode::ServerKey, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_killed_at_every_call_after_acting_is_finished_by_the_next_prune() {
    prune_killed_at_every_call(EncryptionMode::ServerKey, true).await;
    prune_killed_at_every_call(EncryptionMode::None, true).await;
}

/// A backup killed at call `n`, then a clean prune: the recorded snapshots restore, the
/// killed backup's packs are gone, and the next backup works.
async fn backup_killed_at_every_call(lost_responses: bool) {
    let f = Fixture::new("killedbackup", EncryptionMode::ServerKey, small_config()).await;
    let live = Live::new();
    let mut rng = Rng::new(6);
    let mut recorded = Recorded::new();
    for round in 0..3 {
        churn(&live, &mut rng, round);
        let snap = f.backup(&live).await;
        recorded.insert(snap.id, (snap, live.state()));
    }
    let first = *recorded.keys().next().unwrap();
    recorded.remove(&first);
    f.forget(first).await;
    f.prune(ZERO, 0.0).await;
    let (base_packs, _) = packs(&f.collector()).await;
    churn(&live, &mut rng, 3);
    let expected = live.state();
    let open = calls_to_open(&f).await;
    let mut n = 1;
    loop {
        let copy = f.fork().await;
        let faulty = Arc::new(
            Faulty::new(copy.mem.clone(), FaultPlan::Nth(open + n))
                .with_lost_responses(lost_responses),
        );
        let repo = copy.repo_over(faulty.clone()).await;
        let result = copy.backup_with(&copy.collector_on(&repo), &live).await;
        if faulty.injected() == 0 {
            result.unwrap();
            break;
        }
        let context = format!("backup killed at call {n} (lost responses: {lost_responses})");
        let mut recorded = recorded.clone();
        let mut committed = false;
        match result {
            Ok(snap) => {
                committed = true;
                recorded.insert(snap.id, (snap, expected.clone()));
            }
            Err(_) => {
                // A snapshot object whose put acted although the answer was lost is a
                // complete backup of the same tree.
                let collector = copy.collector();
                let left: Vec<SnapshotId> = snapshot_ids(&collector)
                    .await
                    .into_iter()
                    .filter(|id| !recorded.contains_key(id))
                    .collect();
                for id in left {
                    assert!(
                        lost_responses,
                        "{context}: a failed backup left snapshot {id}"
                    );
                    let snap = copy.reader().load_snapshot(id).await.unwrap().snapshot;
                    committed = true;
                    recorded.insert(id, (snap, expected.clone()));
                }
            }
        }
        let clean = copy.prune(ZERO, 0.0).await;
        assert!(clean.deletion_deferred.is_none(), "{context}: {clean:?}");
        let collector = copy.collector();
        assert_eq!(
            snapshot_ids(&collector).await,
            recorded.keys().copied().collect(),
            "{context}"
        );
        let usage = engine::storage_usage(&collector).await.unwrap();
        assert_eq!(usage.unreferenced_bytes, 0, "{context}: {usage:?}");
        if !committed {
            assert_eq!(
                packs(&collector).await.0,
                base_packs,
                "{context}: packs left behind"
            );
        }
        let reader = copy.reader();
        assert_all_restore(&reader, &recorded, &context).await;
        assert_verifies(&reader, &context).await;
        // What the killed backup left (an index, the collector's state) does not stop the next.
        let next = copy.backup(&live).await;
        recorded.insert(next.id, (next, expected.clone()));
        assert_all_restore(&reader, &recorded, &context).await;
        n += 1;
        assert!(n < 2_000, "the backup never got past the failing call");
    }
    eprintln!(
        "backup (lost responses: {lost_responses}) killed at each of its {} calls",
        n - 1
    );
    assert!(n > 5, "the backup made only {n} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_at_every_call_is_collected() {
    backup_killed_at_every_call(false).await;
    backup_killed_at_every_call(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_usage_counts_what_forgetting_frees() {
    let f = Fixture::new("usage", EncryptionMode::ServerKey, small_config()).await;
    let live = Live::new();
    let mut rng = Rng::new(7);
    for i in 0..20 {
        live.write(&format!("base/f{i}"), &rng.bytes_in(30_000..80_000));
    }
    let base = f.backup(&live).await;
    live.write("a.bin", &rng.bytes(200_000));
    let with_a = f.backup(&live).await;
    live.remove("a.bin");
    live.write("b.bin", &rng.bytes(200_000));
    let with_b = f.backup(&live).await;
    f.forget(base.id).await;
    f.prune(ZERO, 0.0).await;

    let collector = f.collector();
    let usage = engine::storage_usage(&collector).await.unwrap();
    assert_eq!(usage.snapshots.len(), 2, "{usage:?}");
    assert_eq!(usage.unreferenced_bytes, 0, "{usage:?}");
    assert!(usage.referenced_bytes <= usage.pack_bytes, "{usage:?}");
    let of = |id: SnapshotId| *usage.snapshots.iter().find(|s| s.snapshot == id).unwrap();
    let (a, b) = (of(with_a.id), of(with_b.id));
    for s in [a, b] {
        // About 200 KB of its own next to about 1 MB shared.
        assert!(s.unique_bytes >= 190_000, "{s:?}");
        assert!(s.unique_bytes * 4 < s.referenced_bytes, "{s:?}");
    }
    let shared = a.referenced_bytes - a.unique_bytes;
    assert_eq!(
        shared,
        b.referenced_bytes - b.unique_bytes,
        "both share the same base"
    );

    let (_, before) = packs(&collector).await;
    f.forget(with_a.id).await;
    let report = f.prune(ZERO, 0.0).await;
    let (_, after) = packs(&collector).await;
    let freed = before - after;
    let unique = a.unique_bytes;
    assert_eq!(freed, report.deleted_bytes);
    assert!(
        freed * 10 >= unique * 8 && freed * 10 <= unique * 11 + 163_840,
        "forgetting a snapshot with {unique} unique bytes freed {freed}"
    );
    let usage = engine::storage_usage(&collector).await.unwrap();
    assert_eq!(usage.snapshots.len(), 1);
    assert_eq!(
        usage.snapshots[0].unique_bytes,
        usage.snapshots[0].referenced_bytes
    );
    let recorded: Recorded = [(with_b.id, (with_b, live.state()))].into_iter().collect();
    assert_all_restore(&f.reader(), &recorded, "after forgetting one").await;
}
