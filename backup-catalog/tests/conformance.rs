//! The conformance suite against each way of opening a `SqliteCatalog`, and against the
//! in-memory reference of `backup-core` (which defines the conventions): first what a new
//! catalog reads, then every convention.

mod common;

use backup_catalog::{SqliteCatalog, conformance};
use backup_core::model::{AccountId, Limit, Settings};
use backup_core::ports::{Catalog, MemoryCatalog};

#[tokio::test]
async fn sqlite_file_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqliteCatalog::open(dir.path().join("catalog.db"))
        .await
        .unwrap();
    conformance::empty(&catalog).await;
    conformance::run(&catalog).await;
}

#[tokio::test]
async fn sqlite_in_memory_conforms() {
    let catalog = SqliteCatalog::in_memory().await.unwrap();
    conformance::empty(&catalog).await;
    conformance::run(&catalog).await;
}

#[tokio::test]
async fn sqlite_urls_conform() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("url.db").display());
    for url in [url.as_str(), "sqlite::memory:"] {
        let catalog = SqliteCatalog::connect(url).await.unwrap();
        conformance::empty(&catalog).await;
        conformance::run(&catalog).await;
    }
}

#[tokio::test]
async fn memory_reference_conforms() {
    let catalog = MemoryCatalog::new();
    conformance::empty(&catalog).await;
    conformance::run(&catalog).await;
    conformance::empty(&catalog).await;
}

/// The suite only adds rows with fresh names and removes them: it passes again on a catalog
/// that already holds data (its own leftovers' absence included), and leaves that data alone.
#[tokio::test]
async fn suite_passes_on_a_non_empty_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqliteCatalog::open(dir.path().join("busy.db"))
        .await
        .unwrap();
    let c: &dyn Catalog = &catalog;
    let account = backup_core::model::Account::new("resident").unwrap();
    let org = backup_core::model::Organization::new("resident-org", "Resident").unwrap();
    let tag = backup_core::model::Tag::new("zzz", None).unwrap();
    c.put_account(&account).await.unwrap();
    c.put_organization(&org).await.unwrap();
    c.put_tag(&tag).await.unwrap();
    c.put_key_envelope(account.id, b"resident key")
        .await
        .unwrap();
    let settings = Settings {
        max_on_demand_snapshots: Limit::Max(4),
        orphan_ttl_days: 7,
        accounts_root: "/home2".into(),
    };
    c.put_settings(&settings).await.unwrap();
    let resident = common::snapshot(account.id, 10, 123);
    let orphan = common::snapshot(AccountId::new(), 10, 45);
    c.put_snapshot(&resident).await.unwrap();
    c.put_snapshot(&orphan).await.unwrap();
    let usage = c.usage_per_account().await.unwrap();

    conformance::run(c).await;
    conformance::run(c).await;

    assert_eq!(c.get_settings().await.unwrap(), settings);
    assert_eq!(c.usage_per_account().await.unwrap(), usage);
    assert_eq!(c.orphan_snapshots().await.unwrap(), vec![orphan]);
    assert_eq!(c.list_snapshots(account.id).await.unwrap(), vec![resident]);

    assert_eq!(c.list_accounts().await.unwrap(), vec![account.clone()]);
    assert_eq!(c.list_organizations().await.unwrap(), vec![org]);
    assert_eq!(c.list_tags().await.unwrap(), vec![tag]);
    assert!(c.list_destinations().await.unwrap().is_empty());
    assert_eq!(
        c.get_key_envelope(account.id).await.unwrap(),
        Some(b"resident key".to_vec())
    );
}

/// The checks are public one by one too.
#[tokio::test]
async fn single_checks_run_alone() {
    let catalog = SqliteCatalog::in_memory().await.unwrap();
    conformance::key_envelopes(&catalog).await;
    conformance::account_deletion(&catalog).await;
    conformance::settings(&catalog).await;
    conformance::usage(&catalog).await;
    conformance::orphans(&catalog).await;
}
