use std::sync::Arc;

use chrono::{TimeZone, Utc};
use object_store::memory::InMemory;
use proptest::prelude::*;

use super::*;
use crate::model::{
    BackupStats, DestinationId, ItemKind, ItemStats, JobId, Snapshot, SnapshotItem, SnapshotKind,
};
use crate::ports::{PlainCrypto, ServerKeys};

fn crypto() -> Arc<PlainCrypto> {
    Arc::new(PlainCrypto::new(ServerKeys::new([4; 32], [5; 32], 6)))
}

fn object(account: AccountId, refs: References, files: u64) -> SnapshotObject {
    // Version 3 (pack references) carries the status, root attributes and owner names;
    // version 1 none of them.
    let v3 = matches!(refs, References::Packs(_));
    let content = if v3 {
        SnapshotContent {
            roots: vec![(ItemKind::HomeDir, ChunkId([3; 32]))],
            trees: TreeVersion::V2,
            root_attrs: vec![(
                ItemKind::HomeDir,
                Attrs {
                    mode: 0o711,
                    mtime_ns: -5,
                    owner: Some(Owner {
                        uid: 1001,
                        gid: 1002,
                    }),
                    xattrs: vec![Xattr {
                        name: b"user.x".to_vec(),
                        value: vec![0, 1, 2],
                    }],
                },
            )],
            names: OwnerNames {
                users: vec![(1001, "alice".into())],
                groups: vec![(1002, "alice".into())],
            },
        }
    } else {
        SnapshotContent {
            roots: vec![(ItemKind::HomeDir, ChunkId([3; 32]))],
            trees: TreeVersion::V1,
            ..SnapshotContent::default()
        }
    };
    SnapshotObject {
        snapshot: Snapshot {
            id: SnapshotId::new(),
            account,
            job: Some(JobId::new()),
            destination: DestinationId::new(),
            created: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
            kind: SnapshotKind::Scheduled,
            status: if v3 {
                crate::model::SnapshotStatus::Partial
            } else {
                crate::model::SnapshotStatus::Complete
            },
            items: vec![SnapshotItem {
                kind: ItemKind::HomeDir,
                stats: ItemStats {
                    files,
                    dirs: 2,
                    symlinks: 1,
                    bytes: 99,
                },
            }],
            encrypted: false,
            locked: false,
            lock_until: None,
            identity: None,
            task: None,
            stats: BackupStats {
                bytes_read: 5,
                ..Default::default()
            },
        },
        references: refs,
        content: Some(content),
    }
}

proptest! {
    #[test]
    fn snapshot_object_round_trip(
        packs in proptest::collection::vec(
            (any::<[u8; 32]>(), proptest::collection::vec(0usize..2000, 1..40)),
            0..20,
        ),
        files in any::<u64>(),
    ) {
        let c = crypto();
        let account = AccountId::new();
        let refs = packs
            .into_iter()
            .filter_map(|(pack, entries)| PackReference::new(ChunkId(pack), entries))
            .collect();
        let obj = object(account, References::Packs(normalize_references(refs)), files);
        let bytes = obj.encode(c.server_keys(), c.begin().unwrap().as_ref()).unwrap();
        prop_assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), SNAPSHOT_VERSION);
        let back = SnapshotObject::decode(c.server_keys(), Some(c.as_ref()), account, obj.snapshot.id, &bytes).unwrap();
        prop_assert_eq!(&back, &obj);
    }

    #[test]
    fn version_1_snapshot_objects_are_still_read(refs in proptest::collection::vec(any::<[u8; 32]>(), 0..50), files in any::<u64>()) {
        let c = crypto();
        let account = AccountId::new();
        let obj = object(account, References::Blobs(refs.into_iter().map(ChunkId).collect()), files);
        let bytes = obj.encode(c.server_keys(), c.begin().unwrap().as_ref()).unwrap();
        let back = SnapshotObject::decode(c.server_keys(), Some(c.as_ref()), account, obj.snapshot.id, &bytes).unwrap();
        prop_assert_eq!(&back, &obj);
        let no_key = SnapshotObject::decode(c.server_keys(), None, account, obj.snapshot.id, &bytes).unwrap();
        prop_assert_eq!(no_key.content, None);
        prop_assert_eq!(no_key.snapshot, obj.snapshot);
    }

    #[test]
    fn other_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let c = crypto();
        let _ = RepoConfig::decode(&bytes);
        let _ = Tree::decode(&bytes, &ChunkId([0; 32]), TreeVersion::V1);
        let _ = Tree::decode(&bytes, &ChunkId([0; 32]), TreeVersion::V2);
        let _ = decode_account(c.server_keys(), &bytes);
        let mut framed = CONFIG_MAGIC.to_vec();
        framed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        framed.extend_from_slice(&bytes);
        let _ = RepoConfig::decode(&framed);
    }

    #[test]
    fn snapshot_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let c = crypto();
        let _ = SnapshotObject::decode(c.server_keys(), Some(c.as_ref()), AccountId::new(), SnapshotId::new(), &bytes);
        let _ = decode_index(c.server_keys(), &ChunkId([0; 32]), &bytes);
    }
}

#[test]
fn snapshot_under_another_id_or_account_is_refused() {
    let c = crypto();
    let account = AccountId::new();
    let obj = object(account, References::Packs(vec![]), 1);
    let bytes = obj
        .encode(c.server_keys(), c.begin().unwrap().as_ref())
        .unwrap();
    let replay = SnapshotObject::decode(c.server_keys(), None, account, SnapshotId::new(), &bytes);
    assert!(matches!(replay, Err(Error::Integrity { .. })));
    let other = SnapshotObject::decode(
        c.server_keys(),
        None,
        AccountId::new(),
        obj.snapshot.id,
        &bytes,
    );
    assert!(matches!(other, Err(Error::Integrity { .. })));
    let mut flipped = bytes.clone();
    flipped[20] ^= 1;
    assert!(
        SnapshotObject::decode(c.server_keys(), None, account, obj.snapshot.id, &flipped).is_err()
    );
}

#[test]
fn pack_references_are_bitmaps_over_trailer_entries() {
    let pack = ChunkId([7; 32]);
    let r = PackReference::new(pack, [9, 0, 3, 9]).unwrap();
    assert_eq!(r.bits(), &[0b0000_1001, 0b0000_0010]);
    assert_eq!(r.indices().collect::<Vec<_>>(), vec![0, 3, 9]);
    assert_eq!(r.count(), 3);
    let all = PackReference::all(pack, 10).unwrap();
    assert_eq!(all.bits(), &[0xff, 0b11]);
    assert_eq!(all.count(), 10);
    assert_eq!(PackReference::all(pack, 16).unwrap().bits(), &[0xff, 0xff]);
    assert!(PackReference::new(pack, []).is_none());
    assert!(PackReference::all(pack, 0).is_none());
    assert!(PackReference::from_bits(pack, vec![0, 0]).is_none());
    assert_eq!(
        PackReference::from_bits(pack, vec![4, 0]).unwrap().bits(),
        &[4]
    );
    // Same pack twice: merged; packs sorted.
    let low = ChunkId([1; 32]);
    let merged = normalize_references(vec![
        PackReference::new(pack, [1]).unwrap(),
        PackReference::new(low, [2]).unwrap(),
        PackReference::new(pack, [12]).unwrap(),
    ]);
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[0].pack, low);
    assert_eq!(merged[1].indices().collect::<Vec<_>>(), vec![1, 12]);
}

#[test]
fn unsorted_or_repeated_pack_references_are_refused() {
    let c = crypto();
    let account = AccountId::new();
    let a = PackReference::new(ChunkId([1; 32]), [0]).unwrap();
    let b = PackReference::new(ChunkId([2; 32]), [0]).unwrap();
    for refs in [vec![b.clone(), a.clone()], vec![a.clone(), a.clone()]] {
        let obj = object(account, References::Packs(refs), 1);
        let bytes = obj
            .encode(c.server_keys(), c.begin().unwrap().as_ref())
            .unwrap();
        let read = SnapshotObject::decode(c.server_keys(), None, account, obj.snapshot.id, &bytes);
        assert!(matches!(read, Err(Error::Integrity { .. })), "{read:?}");
    }
}

#[tokio::test]
async fn repository_init_is_idempotent_and_index_round_trips() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let config = RepoConfig {
        pack_size: 8192,
        ..Default::default()
    };
    let repo = Repository::init(store.clone(), Path::from("r"), config)
        .await
        .unwrap();
    let again = Repository::init(store.clone(), Path::from("r"), RepoConfig::default())
        .await
        .unwrap();
    assert_eq!(again.config(), &config, "the stored config wins");
    assert!(matches!(
        Repository::open(store.clone(), Path::from("nothing")).await,
        Err(Error::NotFound { .. })
    ));

    let c = crypto();
    let account = AccountId::new();
    let handle = repo.account(account, c.clone(), Some(c.clone()));
    let mut w = PackWriter::new(BlobKind::Data, c.begin().unwrap(), 100);
    let data = b"some data".to_vec();
    w.add(
        c.server_keys().chunk_id(&data),
        Compression::None,
        data.len(),
        &data,
    )
    .unwrap();
    let pack = w.finish(c.server_keys()).unwrap();
    let pack_id = pack.id;
    let indexed = handle.put_pack(pack).await.unwrap();

    // Without an index, the locator reads the trailer.
    let locator = handle.load_locator().await.unwrap();
    assert!(locator.contains(&c.server_keys().chunk_id(&data)));
    // With an index, the same.
    handle
        .put_index(std::slice::from_ref(&indexed))
        .await
        .unwrap();
    let locator = handle.load_locator().await.unwrap();
    assert_eq!(locator.len(), 1);
    let (bytes, trailer) = handle.get_pack(&pack_id).await.unwrap();
    assert_eq!(trailer, indexed.trailer);
    assert_eq!(bytes.len() as u64, indexed.len);
    assert_eq!(
        handle.get_trailer(&pack_id, indexed.len).await.unwrap(),
        indexed.trailer
    );
    assert_eq!(repo.list_accounts().await.unwrap(), vec![account]);

    repo.put_key_envelope(account, "k1", b"env").await.unwrap();
    repo.put_key_envelope(account, "k1", b"env").await.unwrap();
    assert!(
        repo.put_key_envelope(account, "k1", b"other")
            .await
            .is_err()
    );
    assert!(repo.put_key_envelope(account, "../x", b"e").await.is_err());
    assert_eq!(
        repo.key_envelopes(account).await.unwrap(),
        vec![("k1".to_owned(), b"env".to_vec())]
    );
}

/// The example header of docs/format.md section 8: 113 bytes, ending in the one reference
/// and the status.
#[test]
fn snapshot_header_matches_the_documented_example() {
    let c = crypto();
    let account = AccountId::new();
    let pack = ChunkId([0xab; 32]);
    let mut obj = object(
        account,
        References::Packs(vec![PackReference::new(pack, [0]).unwrap()]),
        3,
    );
    obj.snapshot.job = None;
    obj.snapshot.status = crate::model::SnapshotStatus::Complete;
    obj.snapshot.encrypted = true;
    obj.snapshot.stats = BackupStats::default();
    obj.snapshot.items[0].stats = ItemStats {
        files: 3,
        dirs: 1,
        symlinks: 0,
        bytes: 300,
    };
    let bytes = obj
        .encode(c.server_keys(), c.begin().unwrap().as_ref())
        .unwrap();
    assert_eq!(&bytes[8..10], &[3, 0], "version 3");
    let h = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize;
    assert_eq!(h, 113);
    let header = &bytes[14..14 + h];
    let mut tail = vec![0x01];
    tail.extend_from_slice(&[0xab; 32]);
    // One reference (entry 0), then the status: complete.
    tail.extend_from_slice(&[0x01, 0x01, 0x01]);
    assert!(header.ends_with(&tail));
    // Ten zero stats, then `encrypted`.
    assert!(header[..header.len() - tail.len()].ends_with(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    // The one item: home (2), files 3, dirs 1, symlinks 0, bytes 300.
    let item = [0x01, 0x02, 0x03, 0x01, 0x00, 0xac, 0x02];
    assert!(header.windows(item.len()).any(|w| w == item));
}

#[test]
fn index_objects_of_version_1_are_still_read() {
    let c = crypto();
    let keys = c.server_keys();
    let trailer = PackTrailer {
        kind: BlobKind::Data,
        seal_header: Vec::new(),
        entries: Vec::new(),
    };
    let packs = vec![IndexedPack {
        id: ChunkId([3; 32]),
        len: 100,
        trailer,
    }];
    let (id, bytes) = encode_index(keys, &packs).unwrap();
    assert_eq!(&bytes[8..10], &INDEX_VERSION.to_le_bytes());
    assert_eq!(decode_index(keys, &id, &bytes).unwrap(), packs);
    // The same index written at version 1 (its MAC, and so its name, recomputed).
    let reframe = |version: u16| {
        let mut body = bytes[..bytes.len() - 32].to_vec();
        body[8..10].copy_from_slice(&version.to_le_bytes());
        let mac = keys.mac(crate::ports::MacDomain::Index, &body);
        body.extend_from_slice(&mac);
        (ChunkId(mac), body)
    };
    let (old_id, old) = reframe(1);
    assert_eq!(decode_index(keys, &old_id, &old).unwrap(), packs);
    let (new_id, newer) = reframe(3);
    assert!(matches!(
        decode_index(keys, &new_id, &newer),
        Err(Error::UnsupportedVersion { version: 3, .. })
    ));
}

#[test]
fn rewritten_references_keep_the_sealed_part_and_authenticate() {
    let c = crypto();
    let account = AccountId::new();
    let old = ChunkId([9; 32]);
    let new = ChunkId([1; 32]);
    let refs = vec![
        PackReference::new(old, [0, 3]).unwrap(),
        PackReference::new(ChunkId([20; 32]), [1]).unwrap(),
    ];
    let obj = object(account, References::Packs(normalize_references(refs)), 3);
    let id = obj.snapshot.id;
    let bytes = obj
        .encode(c.server_keys(), c.begin().unwrap().as_ref())
        .unwrap();
    let rewritten = rewrite_pack_references(c.server_keys(), account, id, &bytes, |refs| {
        Ok(normalize_references(
            refs.into_iter()
                .map(|r| {
                    if r.pack == old {
                        PackReference::new(new, [0, 1]).unwrap()
                    } else {
                        r
                    }
                })
                .collect(),
        ))
    })
    .unwrap()
    .unwrap();
    let back =
        SnapshotObject::decode(c.server_keys(), Some(c.as_ref()), account, id, &rewritten).unwrap();
    assert_eq!(back.snapshot, obj.snapshot);
    assert_eq!(back.content, obj.content);
    assert_eq!(
        back.references,
        References::Packs(vec![
            PackReference::new(new, [0, 1]).unwrap(),
            PackReference::new(ChunkId([20; 32]), [1]).unwrap(),
        ])
    );
    // Another account's keys, or a tampered object, are refused before anything is rewritten.
    let other = PlainCrypto::new(ServerKeys::new([4; 32], [6; 32], 6));
    assert!(rewrite_pack_references(other.server_keys(), account, id, &bytes, Ok).is_err());
    let mut bad = bytes.clone();
    bad[20] ^= 1;
    assert!(rewrite_pack_references(c.server_keys(), account, id, &bad, Ok).is_err());
    // References that are not canonical are refused.
    let unsorted = rewrite_pack_references(c.server_keys(), account, id, &bytes, |mut r| {
        r.reverse();
        Ok(r)
    });
    assert!(unsorted.is_err());
}

#[test]
fn compaction_copies_kept_blobs_under_the_same_seal_header() {
    let c = crypto();
    let keys = c.server_keys();
    let mut writer = PackWriter::new(BlobKind::Data, c.begin().unwrap(), 1 << 16);
    let mut codec = BlobCodec::new(3).unwrap();
    let blobs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 300 + usize::from(i)]).collect();
    for b in &blobs {
        writer
            .add_plaintext(&mut codec, keys.chunk_id(b), b)
            .unwrap();
    }
    let pack = writer.finish(keys).unwrap();
    let keep = [false, true, false, false, true, false];
    let (new, map) = compact_pack(keys, &pack.bytes, &pack.trailer, &keep)
        .unwrap()
        .unwrap();
    assert!(new.bytes.len() < pack.bytes.len());
    assert_eq!(map, vec![None, Some(0), None, None, Some(1), None]);
    assert_eq!(new.trailer.seal_header, pack.trailer.seal_header);
    // The new pack is whole and every kept blob opens from it.
    let trailer = read_pack(keys, &new.id, &new.bytes).unwrap();
    let session = c.open_session(&trailer.seal_header).unwrap();
    for (i, e) in trailer.entries.iter().enumerate() {
        let span = new.bytes[e.offset as usize..][..e.stored_len as usize].to_vec();
        let plain = codec.open_blob(keys, session.as_ref(), e, span).unwrap();
        assert_eq!(plain, blobs[[1, 4][i]]);
    }
    // The same input gives the same pack (an interrupted repack made again is the same).
    let (again, _) = compact_pack(keys, &pack.bytes, &pack.trailer, &keep)
        .unwrap()
        .unwrap();
    assert_eq!(again.id, new.id);
    assert_eq!(
        compact_pack(keys, &pack.bytes, &pack.trailer, &[false; 6]).err(),
        Some(CompactRefusal::NothingKept)
    );
}
