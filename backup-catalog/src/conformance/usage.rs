//! Checks of the reports over snapshot rows: per-account usage and orphans.

use backup_core::model::{AccountId, AccountUsage, Snapshot};
use backup_core::ports::Catalog;
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::entities::{Named, Timed};
use super::{ascending_ids, ok, token};

/// A fresh account row; its id.
async fn fresh_account(c: &dyn Catalog) -> AccountId {
    let account = backup_core::model::Account::sample(&token(), AccountId::new());
    ok(c.put_account(&account).await, "put account");
    account.id
}

/// A snapshot of `account` at `created` storing `bytes`.
fn snapshot(account: AccountId, created: DateTime<Utc>, bytes: u64) -> Snapshot {
    let mut s = Snapshot::sample(account, Uuid::new_v4().into(), created);
    s.stats.bytes_stored = bytes;
    s
}

fn zeros(account: AccountId) -> AccountUsage {
    AccountUsage {
        account,
        snapshots: 0,
        bytes_stored: 0,
    }
}

/// `account_usage` of `account` and its entry in `usage_per_account` (or zeros when absent:
/// asserted to be absent exactly when the totals are zero) must both be `expected`; the
/// whole `usage_per_account` list must be strictly ordered by account id.
async fn expect_usage(c: &dyn Catalog, expected: AccountUsage, when: &str) {
    let account = expected.account;
    let one = ok(c.account_usage(account).await, "account_usage");
    assert_eq!(
        one, expected,
        "conformance: account_usage should be the account's snapshot count and bytes ({when})"
    );
    let all = ok(c.usage_per_account().await, "usage_per_account");
    assert!(
        all.windows(2).all(|w| w[0].account < w[1].account),
        "conformance: usage_per_account should list each account id once, by account id \
         ({when})"
    );
    let entry = all.iter().find(|u| u.account == account).copied();
    let want = (expected.snapshots > 0).then_some(expected);
    assert_eq!(
        entry, want,
        "conformance: usage_per_account should have an entry exactly for account ids with \
         snapshot rows, equal to account_usage ({when})"
    );
}

/// Usage: zeros for an account without snapshots; the totals follow inserts, replaces (a new
/// size, a move to another account), deletes and account deletion; an account id without an
/// account row counts too; `usage_per_account` is ordered by account id and agrees with
/// `account_usage`.
pub async fn usage(catalog: &dyn Catalog) {
    let c = catalog;
    let (a, b) = (fresh_account(c).await, fresh_account(c).await);
    let ghost = AccountId::new();
    let usage = |account, snapshots, bytes_stored| AccountUsage {
        account,
        snapshots,
        bytes_stored,
    };
    expect_usage(c, zeros(a), "an account without snapshots").await;
    expect_usage(c, zeros(ghost), "an unknown account id").await;

    let base = Utc::now();
    let mut s1 = snapshot(a, base - TimeDelta::minutes(30), 100);
    let s2 = snapshot(a, base - TimeDelta::minutes(20), 1 << 40);
    for s in [&s1, &s2] {
        ok(c.put_snapshot(s).await, "put snapshot");
    }
    expect_usage(c, usage(a, 2, (1 << 40) + 100), "after two puts").await;

    s1.stats.bytes_stored = 1000;
    ok(c.put_snapshot(&s1).await, "replace snapshot");
    expect_usage(c, usage(a, 2, (1 << 40) + 1000), "after a replace").await;

    s1.account = b;
    ok(
        c.put_snapshot(&s1).await,
        "move snapshot to another account",
    );
    expect_usage(c, usage(a, 1, 1 << 40), "after a move away").await;
    expect_usage(c, usage(b, 1, 1000), "after a move in").await;

    let stray = snapshot(ghost, base, 5);
    ok(c.put_snapshot(&stray).await, "put snapshot without account");
    expect_usage(c, usage(ghost, 1, 5), "of an id without account row").await;

    assert!(
        ok(c.delete_snapshot(s2.id).await, "delete snapshot"),
        "conformance: deleting a present snapshot should return true"
    );
    expect_usage(c, zeros(a), "after deleting the last snapshot").await;
    ok(c.delete_account(b).await, "delete account");
    expect_usage(c, zeros(b), "after deleting the account").await;
    ok(c.delete_snapshot(stray.id).await, "delete snapshot");
    expect_usage(c, zeros(ghost), "after deleting the stray snapshot").await;
    ok(c.delete_account(a).await, "delete account");
}

/// Orphans: exactly the snapshot rows whose account has no row, by account id, then oldest
/// first, then by id; an account row put later adopts its rows.
pub async fn orphans(catalog: &dyn Catalog) {
    let c = catalog;
    let kept = fresh_account(c).await;
    ok(
        c.put_snapshot(&snapshot(kept, Utc::now(), 1)).await,
        "put snapshot",
    );
    let gone: Vec<AccountId> = ascending_ids(3);
    let base = Utc::now();
    let mut expected = Vec::new();
    for id in &gone {
        let older = snapshot(*id, base - TimeDelta::minutes(50), 1);
        let ids: Vec<backup_core::model::SnapshotId> = ascending_ids(2);
        let (mut tie_b, mut tie_a) = (snapshot(*id, base, 2), snapshot(*id, base, 3));
        (tie_a.id, tie_b.id) = (ids[0], ids[1]);
        // Put newest first and the tie in reverse: the order must come from the catalog.
        for s in [&tie_b, &tie_a, &older] {
            ok(c.put_snapshot(s).await, "put snapshot without account");
        }
        expected.extend([older, tie_a, tie_b]);
    }
    expect_orphans(c, &gone, &expected, "three account ids without rows").await;

    let adopted = backup_core::model::Account::sample(&token(), gone[1]);
    ok(c.put_account(&adopted).await, "put the missing account");
    expected.drain(3..6);
    expect_orphans(c, &gone, &expected, "after an account row came").await;

    for id in gone.iter().chain([&kept]) {
        ok(c.delete_account(*id).await, "delete account");
    }
    expect_orphans(c, &gone, &[], "after deleting their rows").await;
}

/// The orphans of `ours` must be exactly `expected`, and the whole list ordered.
async fn expect_orphans(c: &dyn Catalog, ours: &[AccountId], expected: &[Snapshot], when: &str) {
    let all = ok(c.orphan_snapshots().await, "orphan_snapshots");
    assert!(
        all.windows(2)
            .all(|w| (w[0].account, w[0].created, w[0].id) < (w[1].account, w[1].created, w[1].id)),
        "conformance: orphan_snapshots should be ordered by account id, then oldest first, \
         then by id ({when})"
    );
    let mine: Vec<Snapshot> = all
        .into_iter()
        .filter(|s| ours.contains(&s.account))
        .collect();
    assert_eq!(
        mine, expected,
        "conformance: orphan_snapshots should be exactly the rows without an account row \
         ({when})"
    );
}

/// A catalog without snapshot rows reports no usage and no orphans, and zeros for an
/// account. Only meaningful on a new catalog: see [`empty`](super::empty).
pub(super) async fn no_usage(c: &dyn Catalog) {
    let usage = ok(c.usage_per_account().await, "usage_per_account");
    assert!(
        usage.is_empty(),
        "conformance: a new catalog should report no usage, got {usage:?}"
    );
    let orphans = ok(c.orphan_snapshots().await, "orphan_snapshots");
    assert!(
        orphans.is_empty(),
        "conformance: a new catalog should have no orphans, got {orphans:?}"
    );
    let id = AccountId::new();
    assert_eq!(
        ok(c.account_usage(id).await, "account_usage"),
        zeros(id),
        "conformance: account_usage of an unknown account should be zeros"
    );
}
