//! Checks of the rows that belong to an account: snapshots, downloads, key envelopes, and
//! what deleting or forgetting an account removes.

use backup_core::model::{Account, AccountId, DownloadRequest, Snapshot, SnapshotStatus};
use backup_core::ports::Catalog;
use chrono::{TimeDelta, Utc};
use uuid::Uuid;

use super::entities::{Named, Timed};
use super::{ascending_ids, ok, token};

/// Snapshots: round trips, listed oldest first (ties by id, microseconds apart still
/// ordered) and only for the given account, replace, delete; each status (complete,
/// partial) reads back as put, from `get` and from the list.
pub async fn snapshots(catalog: &dyn Catalog) {
    timed::<Snapshot>(catalog).await;
    snapshot_statuses(catalog).await;
}

/// A complete and a partial snapshot of one account keep their status through `get` and
/// `list_snapshots`.
async fn snapshot_statuses(c: &dyn Catalog) {
    let account = fresh_account(c).await.id;
    let base = Utc::now();
    let statuses = [SnapshotStatus::Complete, SnapshotStatus::Partial];
    let mut snaps = Vec::new();
    for (i, status) in statuses.into_iter().enumerate() {
        let created = base + TimeDelta::seconds(i as i64);
        let mut s = Snapshot::sample(account, Uuid::new_v4().into(), created);
        s.status = status;
        ok(
            c.put_snapshot(&s).await,
            format_args!("put {status} snapshot"),
        );
        snaps.push(s);
    }
    for s in &snaps {
        let got = ok(
            c.get_snapshot(s.id).await,
            format_args!("get {} snapshot", s.status),
        );
        assert_eq!(
            got.as_ref().map(|g| g.status),
            Some(s.status),
            "conformance: a {} snapshot should read back with its status",
            s.status
        );
        assert_eq!(
            got.as_ref(),
            Some(s),
            "conformance: get should return the {} snapshot as put",
            s.status
        );
    }
    let listed = ok(c.list_snapshots(account).await, "list snapshots");
    assert_eq!(
        listed.iter().map(|s| s.status).collect::<Vec<_>>(),
        statuses,
        "conformance: listed snapshots should keep their status (complete, then partial)"
    );
    assert_eq!(
        listed, snaps,
        "conformance: listed snapshots should be as put"
    );
    ok(c.delete_account(account).await, "delete account");
}

/// Download requests: the same checks as [`snapshots`].
pub async fn downloads(catalog: &dyn Catalog) {
    timed::<DownloadRequest>(catalog).await;
}

/// Puts a fresh account row (per-account rows are always given an existing account).
async fn fresh_account(c: &dyn Catalog) -> Account {
    let account = Account::sample(&token(), AccountId::new());
    ok(c.put_account(&account).await, "put account");
    account
}

async fn timed<E: Timed>(c: &dyn Catalog) {
    let what = E::WHAT;
    let (a, b) = (fresh_account(c).await.id, fresh_account(c).await.id);

    let absent = E::Id::from(Uuid::new_v4());
    let got = ok(E::get(c, absent).await, format_args!("get missing {what}"));
    assert!(
        got.is_none(),
        "conformance: get of a missing {what} id should be None, got {got:?}"
    );
    let deleted = ok(
        E::delete(c, absent).await,
        format_args!("delete missing {what}"),
    );
    assert!(
        !deleted,
        "conformance: delete of a missing {what} id should return false"
    );
    let none = ok(E::list(c, a).await, format_args!("list {what}s"));
    assert!(
        none.is_empty(),
        "conformance: a new account should have no {what}s, got {none:?}"
    );

    // Neither insertion order nor id order is the listing order; two are microseconds
    // apart, two share their creation time.
    let base = Utc::now();
    let at = |micros: i64| base + TimeDelta::microseconds(micros);
    let ids: Vec<E::Id> = ascending_ids(6);
    let mut ours = vec![
        E::sample(a, ids[5], base),
        E::sample(a, ids[3], base - TimeDelta::hours(1)),
        E::sample(a, ids[0], at(1)),
        E::sample(a, ids[4], at(2)),
        E::sample(a, ids[2], at(2)),
    ];
    let theirs = E::sample(b, ids[1], base - TimeDelta::hours(2));
    for v in ours.iter().chain([&theirs]) {
        ok(E::put(c, v).await, format_args!("put {what}"));
    }
    for v in ours.iter().chain([&theirs]) {
        let got = ok(E::get(c, v.id()).await, format_args!("get {what}"));
        assert_eq!(
            got.as_ref(),
            Some(v),
            "conformance: get should return the {what} as put"
        );
    }
    expect_listed(c, a, &ours, "after puts").await;
    expect_listed(c, b, std::slice::from_ref(&theirs), "of another account").await;

    // Replace by id, now the newest.
    ours[0].change(at(3));
    ok(E::put(c, &ours[0]).await, format_args!("replace {what}"));
    let got = ok(E::get(c, ours[0].id()).await, format_args!("get {what}"));
    assert_eq!(
        got.as_ref(),
        Some(&ours[0]),
        "conformance: put with a known id should replace the {what}"
    );
    expect_listed(c, a, &ours, "after a replace").await;

    let gone = ours.remove(2);
    let step = format!("delete {what}");
    assert!(
        ok(E::delete(c, gone.id()).await, &step),
        "conformance: deleting a present {what} should return true"
    );
    assert!(
        !ok(E::delete(c, gone.id()).await, &step),
        "conformance: deleting the same {what} twice should return false the second time"
    );
    let got = ok(
        E::get(c, gone.id()).await,
        format_args!("get deleted {what}"),
    );
    assert!(
        got.is_none(),
        "conformance: the deleted {what} should be gone, got {got:?}"
    );
    expect_listed(c, a, &ours, "after a delete").await;

    for account in [a, b] {
        ok(c.delete_account(account).await, "delete account");
    }
}

/// The account's list must be exactly `expected` sorted by (created, id).
async fn expect_listed<E: Timed>(c: &dyn Catalog, account: AccountId, expected: &[E], when: &str) {
    let what = E::WHAT;
    let mut expected = expected.to_vec();
    expected.sort_by_key(|v| (v.created(), v.id()));
    let listed = ok(E::list(c, account).await, format_args!("list {what}s"));
    assert_eq!(
        listed, expected,
        "conformance: an account's {what}s should be exactly its own, oldest first then by \
         id ({when})"
    );
}

/// Key envelopes: absent, put, replace (an empty envelope stays present), per account,
/// delete.
pub async fn key_envelopes(catalog: &dyn Catalog) {
    let c = catalog;
    let (a, b) = (fresh_account(c).await.id, fresh_account(c).await.id);
    let get = |account: AccountId| async move { ok(c.get_key_envelope(account).await, "get key") };

    assert_eq!(
        get(a).await,
        None,
        "conformance: a new account has no key envelope"
    );
    assert!(
        !ok(c.delete_key_envelope(a).await, "delete missing key"),
        "conformance: deleting a missing key envelope should return false"
    );

    let first: Vec<u8> = (0..=255).collect();
    ok(c.put_key_envelope(a, &first).await, "put key");
    assert_eq!(
        get(a).await,
        Some(first),
        "conformance: the key envelope should read back as put"
    );
    let second: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    ok(c.put_key_envelope(a, &second).await, "replace key");
    assert_eq!(
        get(a).await,
        Some(second),
        "conformance: putting a key envelope should replace the previous one"
    );
    ok(c.put_key_envelope(b, b"other account").await, "put key");
    ok(c.put_key_envelope(a, &[]).await, "put empty key");
    assert_eq!(
        get(a).await,
        Some(Vec::new()),
        "conformance: an empty key envelope should be stored as empty, not absent"
    );

    assert!(
        ok(c.delete_key_envelope(a).await, "delete key"),
        "conformance: deleting a present key envelope should return true"
    );
    assert!(
        !ok(c.delete_key_envelope(a).await, "delete key twice"),
        "conformance: deleting a key envelope twice should return false the second time"
    );
    assert_eq!(
        get(a).await,
        None,
        "conformance: a deleted key envelope is gone"
    );
    assert_eq!(
        get(b).await,
        Some(b"other account".to_vec()),
        "conformance: deleting one account's key envelope should keep another's"
    );

    for account in [a, b] {
        ok(c.delete_account(account).await, "delete account");
    }
}

/// Deleting an account removes its snapshot rows, downloads and key envelope, and nothing of
/// another account; deleting it again returns false.
pub async fn account_deletion(catalog: &dyn Catalog) {
    let c = catalog;
    let (gone, kept) = (fresh_account(c).await, fresh_account(c).await);
    let base = Utc::now();
    let mut rows = Vec::new();
    for (i, account) in [gone.id, kept.id].into_iter().enumerate() {
        let older = base - TimeDelta::minutes(10 + i as i64);
        let snaps = [
            Snapshot::sample(account, Uuid::new_v4().into(), older),
            Snapshot::sample(account, Uuid::new_v4().into(), base),
        ];
        let download = DownloadRequest::sample(account, Uuid::new_v4().into(), base);
        for s in &snaps {
            ok(c.put_snapshot(s).await, "put snapshot");
        }
        ok(c.put_download(&download).await, "put download");
        ok(
            c.put_key_envelope(account, account.as_bytes()).await,
            "put key",
        );
        rows.push((snaps, download));
    }

    assert!(
        ok(c.delete_account(gone.id).await, "delete account"),
        "conformance: deleting a present account should return true"
    );
    let (snaps, download) = &rows[0];
    let account = ok(c.get_account(gone.id).await, "get deleted account");
    assert!(account.is_none(), "conformance: a deleted account is gone");
    let listed = ok(c.list_snapshots(gone.id).await, "list snapshots");
    assert!(
        listed.is_empty(),
        "conformance: deleting an account should delete its snapshot rows, {} left",
        listed.len()
    );
    for s in snaps {
        let got = ok(c.get_snapshot(s.id).await, "get snapshot");
        assert!(
            got.is_none(),
            "conformance: a deleted account's snapshot is still readable"
        );
    }
    let listed = ok(c.list_downloads(gone.id).await, "list downloads");
    let got = ok(c.get_download(download.id).await, "get download");
    assert!(
        listed.is_empty() && got.is_none(),
        "conformance: deleting an account should delete its downloads"
    );
    let key = ok(c.get_key_envelope(gone.id).await, "get key");
    assert!(
        key.is_none(),
        "conformance: deleting an account should delete its key envelope"
    );
    let found = ok(c.find_accounts(gone.username.as_str()).await, "find");
    assert!(
        found.is_empty(),
        "conformance: find_accounts still finds a deleted account"
    );

    let (snaps, download) = &rows[1];
    let account = ok(c.get_account(kept.id).await, "get other account");
    assert_eq!(
        account.as_ref(),
        Some(&kept),
        "conformance: deleting an account should keep the others"
    );
    assert_eq!(
        ok(c.list_snapshots(kept.id).await, "list snapshots"),
        snaps.to_vec(),
        "conformance: deleting an account should keep another account's snapshots"
    );
    assert_eq!(
        ok(c.list_downloads(kept.id).await, "list downloads"),
        vec![download.clone()],
        "conformance: deleting an account should keep another account's downloads"
    );
    assert_eq!(
        ok(c.get_key_envelope(kept.id).await, "get key"),
        Some(kept.id.as_bytes().to_vec()),
        "conformance: deleting an account should keep another account's key envelope"
    );

    assert!(
        !ok(c.delete_account(gone.id).await, "delete account twice"),
        "conformance: deleting an account twice should return false the second time"
    );
    ok(c.delete_account(kept.id).await, "delete account");
}

/// Forgetting an account removes its row only: its snapshot rows (now orphans), downloads
/// and key envelope stay; forgetting it again returns false.
pub async fn account_forgetting(catalog: &dyn Catalog) {
    let c = catalog;
    let account = fresh_account(c).await;
    let base = Utc::now();
    let snap = Snapshot::sample(account.id, Uuid::new_v4().into(), base);
    let download = DownloadRequest::sample(account.id, Uuid::new_v4().into(), base);
    ok(c.put_snapshot(&snap).await, "put snapshot");
    ok(c.put_download(&download).await, "put download");
    ok(c.put_key_envelope(account.id, b"kept").await, "put key");

    assert!(
        ok(c.forget_account(account.id).await, "forget account"),
        "conformance: forgetting a present account should return true"
    );
    let got = ok(c.get_account(account.id).await, "get forgotten account");
    assert!(got.is_none(), "conformance: a forgotten account is gone");
    assert_eq!(
        ok(c.list_snapshots(account.id).await, "list snapshots"),
        vec![snap.clone()],
        "conformance: forgetting an account should keep its snapshot rows"
    );
    let orphans = ok(c.orphan_snapshots().await, "orphan_snapshots");
    assert!(
        orphans.contains(&snap),
        "conformance: a forgotten account's snapshots should be orphans"
    );
    assert_eq!(
        ok(c.list_downloads(account.id).await, "list downloads"),
        vec![download],
        "conformance: forgetting an account should keep its downloads"
    );
    assert_eq!(
        ok(c.get_key_envelope(account.id).await, "get key"),
        Some(b"kept".to_vec()),
        "conformance: forgetting an account should keep its key envelope"
    );
    assert!(
        !ok(c.forget_account(account.id).await, "forget account twice"),
        "conformance: forgetting an account twice should return false the second time"
    );
    ok(c.delete_account(account.id).await, "delete account");
}
