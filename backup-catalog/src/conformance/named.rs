//! Checks of the entities listed by name: organizations, accounts, tags, priority groups,
//! destinations and jobs.

use backup_core::model::{Account, AccountId, Destination, Job, Organization, PriorityGroup, Tag};
use backup_core::ports::Catalog;
use uuid::Uuid;

use super::entities::{Named, NamedStore, Unique};
use super::{ascending_ids, expect_clash, ok, token};

/// Organizations: the common checks, `find_organization`, and login uniqueness.
pub async fn organizations(catalog: &dyn Catalog) {
    common::<Organization>(catalog).await;
    unique::<Organization>(catalog).await;
}

/// Accounts: the common checks (listed by username, then id) and `find_accounts` with a
/// username shared by two accounts.
pub async fn accounts(catalog: &dyn Catalog) {
    common::<Account>(catalog).await;
    find_accounts(catalog).await;
}

/// Tags: the common checks (names may repeat: ties are ordered by id).
pub async fn tags(catalog: &dyn Catalog) {
    common::<Tag>(catalog).await;
}

/// Priority groups: the common checks (names may repeat: ties are ordered by id).
pub async fn priority_groups(catalog: &dyn Catalog) {
    common::<PriorityGroup>(catalog).await;
}

/// Destinations: the common checks, `find_destination`, and name uniqueness.
pub async fn destinations(catalog: &dyn Catalog) {
    common::<Destination>(catalog).await;
    unique::<Destination>(catalog).await;
}

/// Jobs: the common checks (names may repeat: ties are ordered by id).
pub async fn jobs(catalog: &dyn Catalog) {
    common::<Job>(catalog).await;
}

/// Missing ids, round trips, ordering (with ties on the key unless it is unique), replace by
/// id with a new key, delete.
async fn common<E: NamedStore>(c: &dyn Catalog) {
    let what = E::WHAT;
    let tok = token();
    let key = |s: &str| format!("{tok}-{s}");

    let absent = E::Id::from(Uuid::new_v4());
    let found = ok(E::get(c, absent).await, format_args!("get missing {what}"));
    assert!(
        found.is_none(),
        "conformance: get of a missing {what} id should be None, got {found:?}"
    );
    let deleted = ok(
        E::delete(c, absent).await,
        format_args!("delete missing {what}"),
    );
    assert!(
        !deleted,
        "conformance: delete of a missing {what} id should return false"
    );

    // Keys chosen so that neither insertion order nor id order is the listing order; "B"
    // sorts before "a" (byte order); the last two share a key unless keys are unique.
    let ids: Vec<E::Id> = ascending_ids(5);
    let tie = if E::UNIQUE { "d" } else { "c" };
    let mut values = vec![
        E::sample(&key("b"), ids[0]),
        E::sample(&key("a"), ids[4]),
        E::sample(&key("c"), ids[2]),
        E::sample(&key(tie), ids[1]),
        E::sample(&key("B"), ids[3]),
    ];
    for v in &values {
        ok(E::put(c, v).await, format_args!("put {what} {:?}", v.key()));
    }
    for v in &values {
        let got = ok(E::get(c, v.id()).await, format_args!("get {what}"));
        assert_eq!(
            got.as_ref(),
            Some(v),
            "conformance: get should return the {what} as put"
        );
    }
    expect_listed(c, &values, "after puts").await;

    // Replace by id, with a new key and other fields changed.
    let mut changed = values[0].clone();
    changed.change(&key("z"));
    ok(E::put(c, &changed).await, format_args!("replace {what}"));
    let got = ok(E::get(c, changed.id()).await, format_args!("get {what}"));
    assert_eq!(
        got.as_ref(),
        Some(&changed),
        "conformance: put with a known id should replace the {what}"
    );
    values[0] = changed;
    expect_listed(c, &values, "after a replace").await;

    for v in &values {
        let step = format!("delete {what}");
        assert!(
            ok(E::delete(c, v.id()).await, &step),
            "conformance: deleting a present {what} should return true"
        );
        assert!(
            !ok(E::delete(c, v.id()).await, &step),
            "conformance: deleting the same {what} twice should return false the second time"
        );
        let got = ok(E::get(c, v.id()).await, format_args!("get deleted {what}"));
        assert!(
            got.is_none(),
            "conformance: the deleted {what} should be gone, got {got:?}"
        );
    }
    expect_listed::<E>(c, &[], "after deletes").await;
}

/// Checks that the whole list is ordered by key then id, and that `ours` appear in it
/// exactly once each, equal to what was put.
async fn expect_listed<E: NamedStore>(c: &dyn Catalog, ours: &[E], when: &str) {
    let what = E::WHAT;
    let list = ok(E::list(c).await, format_args!("list {what}s"));
    for pair in list.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            (a.key(), a.id()) < (b.key(), b.id()),
            "conformance: {what}s should be listed by key then id ({when}): {:?} {:?} came \
             before {:?} {:?}",
            a.key(),
            a.id(),
            b.key(),
            b.id()
        );
    }
    let mut expected = ours.to_vec();
    expected.sort_by(|a, b| (a.key(), a.id()).cmp(&(b.key(), b.id())));
    let listed: Vec<E> = list
        .into_iter()
        .filter(|v| ours.iter().any(|o| o.id() == v.id()))
        .collect();
    assert_eq!(
        listed, expected,
        "conformance: the listed {what}s should be those put, in order ({when})"
    );
}

/// Uniqueness of the key, on insert and on rename; `find_*`.
async fn unique<E: Unique>(c: &dyn Catalog) {
    let what = E::WHAT;
    let tok = token();
    let (key, key2) = (format!("{tok}-u"), format!("{tok}-v"));
    let ids: Vec<E::Id> = ascending_ids(2);

    let missing = ok(E::find(c, &format!("{tok}-none")).await, "find missing");
    assert!(
        missing.is_none(),
        "conformance: find of an unknown {what} key should be None, got {missing:?}"
    );

    let a = E::sample(&key, ids[0]);
    ok(E::put(c, &a).await, format_args!("put {what}"));
    ok(
        E::put(c, &a).await,
        format_args!("put the same {what} again"),
    );
    let mut a1 = a.clone();
    a1.change(&key);
    ok(
        E::put(c, &a1).await,
        format_args!("replace the {what}, keeping its key"),
    );
    let found = ok(E::find(c, &key).await, format_args!("find {what}"));
    assert_eq!(
        found.as_ref(),
        Some(&a1),
        "conformance: find should return the {what} with that key"
    );

    // Insert clash: refused, nothing changes.
    let b = E::sample(&key, ids[1]);
    expect_clash(
        E::put(c, &b).await,
        &key,
        format_args!("put another {what} with a taken key"),
    );
    let got = ok(E::get(c, b.id()).await, format_args!("get refused {what}"));
    assert!(
        got.is_none(),
        "conformance: the refused {what} should not be stored"
    );
    let found = ok(E::find(c, &key).await, format_args!("find {what}"));
    assert_eq!(
        found.as_ref(),
        Some(&a1),
        "conformance: a refused put should leave the {what} holding the key unchanged"
    );

    // Renaming frees the old key.
    let mut a2 = a1.clone();
    a2.change(&key2);
    ok(E::put(c, &a2).await, format_args!("rename {what}"));
    let old = ok(E::find(c, &key).await, format_args!("find old key"));
    assert!(
        old.is_none(),
        "conformance: after a rename the old {what} key should be free, found {old:?}"
    );
    ok(
        E::put(c, &b).await,
        format_args!("put the other {what} with the freed key"),
    );
    let found = ok(E::find(c, &key).await, format_args!("find {what}"));
    assert_eq!(found.as_ref(), Some(&b), "conformance: find after reuse");

    // Rename clash: refused, both rows unchanged.
    let mut b2 = b.clone();
    b2.change(&key2);
    expect_clash(
        E::put(c, &b2).await,
        &key2,
        format_args!("rename the other {what} to a taken key"),
    );
    let got = ok(E::get(c, b.id()).await, format_args!("get {what}"));
    assert_eq!(
        got.as_ref(),
        Some(&b),
        "conformance: a refused rename should leave the {what} unchanged"
    );
    let found = ok(E::find(c, &key2).await, format_args!("find {what}"));
    assert_eq!(
        found.as_ref(),
        Some(&a2),
        "conformance: find after a refused rename"
    );

    for v in [&a2, &b] {
        ok(E::delete(c, v.id()).await, format_args!("delete {what}"));
    }
    let gone = ok(E::find(c, &key2).await, format_args!("find deleted {what}"));
    assert!(
        gone.is_none(),
        "conformance: find of the deleted {what} should be None, got {gone:?}"
    );
}

/// `find_accounts`: every account with the username, by id; none for an unknown one.
async fn find_accounts(c: &dyn Catalog) {
    let tok = token();
    let (same, other) = (format!("{tok}-same"), format!("{tok}-other"));
    let ids: Vec<AccountId> = ascending_ids(3);
    let low = Account::sample(&same, ids[0]);
    let mid = Account::sample(&other, ids[1]);
    let high = Account::sample(&same, ids[2]);
    for a in [&high, &mid, &low] {
        ok(c.put_account(a).await, "put account");
    }
    let find = |name: String| async move { ok(c.find_accounts(&name).await, "find_accounts") };

    assert_eq!(
        find(same.clone()).await,
        vec![low.clone(), high.clone()],
        "conformance: find_accounts should return every account with the username, by id"
    );
    assert_eq!(find(other.clone()).await, vec![mid.clone()]);
    assert_eq!(
        find(format!("{tok}-none")).await,
        Vec::<Account>::new(),
        "conformance: find_accounts of an unknown username should be empty"
    );

    let mut renamed = high.clone();
    renamed.change(&other);
    ok(c.put_account(&renamed).await, "rename account");
    assert_eq!(
        find(same).await,
        vec![low.clone()],
        "conformance: find_accounts after a rename should drop the renamed account"
    );
    assert_eq!(
        find(other).await,
        vec![mid.clone(), renamed],
        "conformance: find_accounts after a rename should include it, by id"
    );

    for a in [&low, &mid, &high] {
        ok(c.delete_account(a.id).await, "delete account");
    }
}
