//! Exclusive create under contention.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutPayload};

use super::{assert_same, clean, fresh, ok, pattern, read};

/// Tasks racing in each round.
const RACERS: u64 = 8;
/// Rounds, each on a new key.
const ROUNDS: u64 = 5;

/// [`PutMode::Create`] raced by 8 tasks: exactly one winner per key, `AlreadyExists` for
/// the others, the winner's bytes stored; a later create fails and changes nothing.
pub async fn create_race(store: &Arc<dyn ObjectStore>, root: &Path) {
    let base = fresh(root, "create");
    for round in 0..ROUNDS {
        let key = base.clone().join(format!("race-{round}").as_str());
        let tasks: Vec<_> = (0..RACERS)
            .map(|racer| {
                let (store, key) = (store.clone(), key.clone());
                // Different sizes, so a mix of two writers could not go unnoticed.
                let data = pattern(1000 + (racer as usize) * 7919, round * 100 + racer);
                tokio::spawn(async move {
                    let result = store
                        .put_opts(&key, PutPayload::from(data.clone()), PutMode::Create.into())
                        .await;
                    (data, result)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (data, result) = task
                .await
                .unwrap_or_else(|e| panic!("conformance: create race: a task failed: {e}"));
            match result {
                Ok(_) => winners.push(data),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => panic!(
                    "conformance: create race round {round}: expected AlreadyExists, got: {e}"
                ),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "conformance: create race round {round}: exactly one of {RACERS} creates must win"
        );
        assert_same(
            &read(store, &key, "create race").await,
            &winners[0],
            format_args!("round {round}: the winner's bytes"),
        );
        match store
            .put_opts(&key, "late".into(), PutMode::Create.into())
            .await
        {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => {
                panic!("conformance: create on an existing key: expected AlreadyExists, got: {e}")
            }
            Ok(_) => panic!("conformance: create on an existing key succeeded"),
        }
        assert_same(
            &read(store, &key, "create").await,
            &winners[0],
            "bytes after a refused create",
        );
    }
    let free = base.clone().join("free");
    ok(
        store
            .put_opts(&free, "new".into(), PutMode::Create.into())
            .await,
        "create on a free key",
    );
    clean(store, &base).await;
}
