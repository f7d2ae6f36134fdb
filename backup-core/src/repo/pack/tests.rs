use proptest::prelude::*;

use super::*;
use crate::ports::{ContentSealer, PlainCrypto};

fn keys() -> ServerKeys {
    ServerKeys::new([7; 32], [9; 32], 3)
}

fn build(blobs: &[Vec<u8>], kind: BlobKind) -> (FinishedPack, ServerKeys) {
    let crypto = PlainCrypto::new(keys());
    let mut codec = BlobCodec::new(1).unwrap();
    let mut w = PackWriter::new(kind, crypto.begin().unwrap(), 1024);
    for b in blobs {
        w.add_plaintext(&mut codec, crypto.server_keys().chunk_id(b), b)
            .unwrap();
    }
    (w.finish(crypto.server_keys()).unwrap(), keys())
}

/// A pack written into a reused buffer (with an earlier pack's bytes in it) is the same pack.
#[test]
fn a_reused_buffer_makes_the_same_pack() {
    let blobs = [vec![1u8; 3000], b"small".to_vec()];
    let (fresh, _) = build(&blobs, BlobKind::Data);
    let crypto = PlainCrypto::new(keys());
    let mut codec = BlobCodec::new(1).unwrap();
    let old = vec![0xAA; 5000];
    let mut w = PackWriter::with_buffer(BlobKind::Data, crypto.begin().unwrap(), old, 1024);
    for b in &blobs {
        w.add_plaintext(&mut codec, crypto.server_keys().chunk_id(b), b)
            .unwrap();
    }
    let reused = w.finish(crypto.server_keys()).unwrap();
    assert_eq!(reused.bytes, fresh.bytes);
    assert_eq!(reused.id, fresh.id);
}

proptest! {
    #[test]
    fn pack_round_trip(blobs in proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000),
            (1usize..5000).prop_map(|n| vec![b'a'; n]),
        ],
        1..12,
    )) {
        let (pack, keys) = build(&blobs, BlobKind::Data);
        let trailer = read_pack(&keys, &pack.id, &pack.bytes).unwrap();
        prop_assert_eq!(&trailer, &pack.trailer);
        let span = trailer_span(&pack.bytes, "p").unwrap();
        let from_tail = read_trailer(&keys, &pack.bytes[pack.bytes.len() - span..], pack.bytes.len() as u64, "p").unwrap();
        prop_assert_eq!(&from_tail, &trailer);
        let crypto = PlainCrypto::new(ServerKeys::new([7; 32], [9; 32], 3));
        let session = crate::ports::ContentOpener::open_session(&crypto, &trailer.seal_header).unwrap();
        let mut codec = BlobCodec::new(1).unwrap();
        for (blob, e) in blobs.iter().zip(&trailer.entries) {
            let sealed = pack.bytes[e.offset as usize..(e.offset + u64::from(e.stored_len)) as usize].to_vec();
            let plain = codec.open_blob(&keys, session.as_ref(), e, sealed).unwrap();
            prop_assert_eq!(&plain, blob);
        }
    }

    #[test]
    fn any_flipped_byte_is_detected(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let blobs = vec![b"hello world".repeat(50), vec![1, 2, 3]];
        let (pack, keys) = build(&blobs, BlobKind::Data);
        let mut bytes = pack.bytes.clone();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let integrity = matches!(read_pack(&keys, &pack.id, &bytes), Err(Error::Integrity { .. }));
        prop_assert!(integrity);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let k = keys();
        let _ = read_pack(&k, &ChunkId([0; 32]), &bytes);
        let _ = read_trailer(&k, &bytes, bytes.len() as u64, "x");
        let _ = PackTrailer::decode(&bytes, "x", Some(bytes.len() as u64));
    }
}

/// `n` incompressible bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 1u64;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

#[test]
fn groups_compress_at_the_group_level_and_blobs_at_the_blob_level() {
    let text: Vec<u8> = (0..2000).flat_map(text_member).collect();
    let group = |level, group_level| {
        BlobCodec::with_group_level(level, group_level)
            .unwrap()
            .encode_group(&text)
            .unwrap()
    };
    let blob = |level, group_level| {
        BlobCodec::with_group_level(level, group_level)
            .unwrap()
            .encode(&text)
            .1
    };
    assert_eq!(group(19, 1), group(1, 1));
    assert_ne!(group(1, 1), group(1, 19));
    assert_eq!(blob(1, 19), blob(1, 1));
    assert_ne!(blob(1, 1), blob(19, 1));
}

#[test]
fn compression_is_skipped_when_it_does_not_shrink() {
    let mut codec = BlobCodec::new(1).unwrap();
    let text = b"abcabcabc".repeat(1000);
    assert_eq!(codec.encode(&text).0, Compression::Zstd);
    let random = noise(10_000);
    let (c, enc) = codec.encode(&random);
    assert_eq!(c, Compression::None);
    assert_eq!(enc, random);
}

#[test]
fn large_blobs_are_sampled_before_compression() {
    let mut codec = BlobCodec::new(1).unwrap();
    let mut x = 7u64;
    let random: Vec<u8> = (0..SAMPLED_FROM * 2)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (c, enc) = codec.encode(&random);
    assert_eq!(c, Compression::None);
    assert_eq!(enc, random);
    // Compressible windows: the whole blob is compressed and decodes back.
    let mut mixed = b"<p>some page text</p>\n".repeat(SAMPLED_FROM / 10);
    mixed.extend_from_slice(&random[..SAMPLED_FROM / 4]);
    let (c, enc) = codec.encode(&mixed);
    assert_eq!(c, Compression::Zstd);
    assert!(enc.len() < mixed.len() / 2);
    assert_eq!(zstd::bulk::decompress(&enc, mixed.len()).unwrap(), mixed);
}

#[test]
fn trailer_from_another_account_is_refused() {
    let (pack, _) = build(&[b"data".to_vec()], BlobKind::Tree);
    let other = ServerKeys::new([1; 32], [2; 32], 3);
    assert!(matches!(
        read_pack(&other, &pack.id, &pack.bytes),
        Err(Error::Integrity { .. })
    ));
    let span = trailer_span(&pack.bytes, "p").unwrap();
    assert!(
        read_trailer(
            &other,
            &pack.bytes[pack.bytes.len() - span..],
            pack.bytes.len() as u64,
            "p"
        )
        .is_err()
    );
}

#[test]
fn tampered_blob_fails_authentication() {
    let blobs = vec![vec![5u8; 100]];
    let (pack, keys) = build(&blobs, BlobKind::Data);
    let e = pack.trailer.entries[0];
    let mut sealed =
        pack.bytes[e.offset as usize..(e.offset + u64::from(e.stored_len)) as usize].to_vec();
    sealed[0] ^= 1;
    let crypto = PlainCrypto::new(ServerKeys::new([7; 32], [9; 32], 3));
    let session = crate::ports::ContentOpener::open_session(&crypto, &[]).unwrap();
    let mut codec = BlobCodec::new(1).unwrap();
    assert!(matches!(
        codec.open_blob(&keys, session.as_ref(), &e, sealed),
        Err(Error::Integrity { .. })
    ));
}

/// A pack holding `groups` as groups (zstd over the concatenation) and `singles` one by one.
fn build_with_groups(groups: &[Vec<Vec<u8>>], singles: &[Vec<u8>]) -> FinishedPack {
    let crypto = PlainCrypto::new(keys());
    let mut codec = BlobCodec::new(3).unwrap();
    let mut w = PackWriter::new(BlobKind::Data, crypto.begin().unwrap(), 1024);
    for (i, members) in groups.iter().enumerate() {
        let ids: Vec<_> = members
            .iter()
            .map(|m| (crypto.server_keys().chunk_id(m), m.len() as u32))
            .collect();
        // Half the groups compressed here, half by the writer straight into the pack.
        if i % 2 == 0 {
            let compressed = codec.encode_group(&members.concat()).unwrap();
            w.add_group(&ids, &compressed).unwrap();
        } else {
            assert!(
                w.add_group_plaintext(&mut codec, &ids, &members.concat())
                    .unwrap()
            );
        }
        if let Some(b) = singles.get(i) {
            let (c, enc) = codec.encode(b);
            w.add(crypto.server_keys().chunk_id(b), c, b.len(), &enc)
                .unwrap();
        }
    }
    w.finish(crypto.server_keys()).unwrap()
}

fn text_member(i: usize) -> Vec<u8> {
    format!("<p>page {i}: some text of the page, repeated</p>\n")
        .repeat(5 + i % 7)
        .into_bytes()
}

#[test]
fn groups_round_trip_and_each_group_opens_once() {
    let groups: Vec<Vec<Vec<u8>>> = (0..3)
        .map(|g| (0..4 + g).map(|i| text_member(g * 10 + i)).collect())
        .collect();
    let singles = vec![b"single blob ".repeat(40), vec![9u8; 50]];
    let pack = build_with_groups(&groups, &singles);
    let keys = keys();
    let trailer = read_pack(&keys, &pack.id, &pack.bytes).unwrap();
    // The derived places survive encoding: they are recomputed from the trailer order.
    assert_eq!(trailer, pack.trailer);
    let members: Vec<_> = trailer
        .entries
        .iter()
        .filter(|e| e.compression == Compression::ZstdGroup)
        .collect();
    assert_eq!(members.len(), 4 + 5 + 6);
    let first_group = &trailer.entries[..4];
    assert!(
        first_group
            .iter()
            .all(|e| e.offset == first_group[0].offset)
    );
    assert_eq!(first_group[1].group_start, first_group[0].raw_len);
    let group_len: u32 = groups[0].iter().map(|m| m.len() as u32).sum();
    assert!(first_group.iter().all(|e| e.group_len == group_len));

    let crypto = PlainCrypto::new(self::keys());
    let session = crate::ports::ContentOpener::open_session(&crypto, &trailer.seal_header).unwrap();
    let mut codec = BlobCodec::new(1).unwrap();
    let expected: Vec<Vec<u8>> = (0..3)
        .flat_map(|g| {
            let mut v = groups[g].clone();
            v.extend(singles.get(g).cloned());
            v
        })
        .collect();
    let mut opened = Vec::new();
    codec.open_all(
        &keys,
        session.as_ref(),
        &pack.bytes,
        &trailer.entries,
        |_, r| {
            opened.push(r.unwrap());
        },
    );
    assert_eq!(opened, expected);
    // One member alone, through the whole group.
    let e = trailer.entries[2];
    let sealed =
        pack.bytes[e.offset as usize..(e.offset + u64::from(e.stored_len)) as usize].to_vec();
    assert_eq!(
        codec
            .open_blob(&keys, session.as_ref(), &e, sealed)
            .unwrap(),
        groups[0][2]
    );
}

#[test]
fn a_flipped_byte_in_a_group_fails_every_member_but_not_the_others() {
    let groups = vec![(0..5).map(text_member).collect::<Vec<_>>()];
    let singles = vec![b"alone ".repeat(30)];
    let pack = build_with_groups(&groups, &singles);
    let keys = keys();
    let trailer = &pack.trailer;
    let mut bytes = pack.bytes.clone();
    bytes[trailer.entries[0].offset as usize + 3] ^= 0x10;
    // The pack id catches it for a whole-pack read.
    assert!(matches!(
        read_pack(&keys, &pack.id, &bytes),
        Err(Error::Integrity { .. })
    ));
    let crypto = PlainCrypto::new(self::keys());
    let session = crate::ports::ContentOpener::open_session(&crypto, &[]).unwrap();
    let mut codec = BlobCodec::new(1).unwrap();
    let mut results = Vec::new();
    codec.open_all(&keys, session.as_ref(), &bytes, &trailer.entries, |_, r| {
        results.push(r.is_ok());
    });
    // Unencrypted (no AEAD): the damaged frame fails to decode or a member fails its id.
    assert!(!results[..5].iter().all(|ok| *ok));
    assert_eq!(results.len(), 6);
    assert!(results[5]);
}

#[test]
fn a_group_that_does_not_compress_adds_nothing_and_leaves_the_pack_as_it_was() {
    let crypto = PlainCrypto::new(keys());
    let mut codec = BlobCodec::new(3).unwrap();
    let mut w = PackWriter::new(BlobKind::Data, crypto.begin().unwrap(), 1 << 20);
    let text = text_member(1);
    w.add_plaintext(&mut codec, crypto.server_keys().chunk_id(&text), &text)
        .unwrap();
    let len = w.len();
    let noise = noise(4000);
    let members = [
        (crypto.server_keys().chunk_id(&noise[..1000]), 1000),
        (crypto.server_keys().chunk_id(&noise[1000..]), 3000),
    ];
    assert!(!w.add_group_plaintext(&mut codec, &members, &noise).unwrap());
    assert_eq!(w.len(), len);
    // Members whose lengths do not add up to the plaintext are refused.
    assert!(
        w.add_group_plaintext(&mut codec, &members[..1], &noise)
            .is_err()
    );
    assert_eq!(w.len(), len);
    let pack = w.finish(crypto.server_keys()).unwrap();
    let trailer = read_pack(&keys(), &pack.id, &pack.bytes).unwrap();
    assert_eq!(trailer.entries.len(), 1);
}

#[test]
fn groups_longer_than_the_bound_are_refused() {
    let crypto = PlainCrypto::new(keys());
    let mut w = PackWriter::new(BlobKind::Data, crypto.begin().unwrap(), 1024);
    let too_long = [(ChunkId([1; 32]), GROUP_MAX_LEN), (ChunkId([2; 32]), 1)];
    assert!(w.add_group(&too_long, &[0; 10]).is_err());
    assert!(w.add_group(&[], &[0; 10]).is_err());
    assert!(
        w.add(ChunkId([3; 32]), Compression::ZstdGroup, 1, &[0])
            .is_err()
    );

    // A trailer claiming such a group (consistent with its MAC) is refused when parsed.
    let entry = |id: u8, raw_len: u32| TrailerEntry {
        id: ChunkId([id; 32]),
        kind: BlobKind::Data,
        compression: Compression::ZstdGroup,
        offset: 12,
        stored_len: 10,
        raw_len,
        group_start: 0,
        group_len: 0,
    };
    let trailer = PackTrailer {
        kind: BlobKind::Data,
        seal_header: Vec::new(),
        entries: vec![entry(1, GROUP_MAX_LEN), entry(2, 1)],
    };
    let bytes = trailer.encode().unwrap();
    assert!(matches!(
        PackTrailer::decode(&bytes, "p", None),
        Err(Error::Integrity { .. })
    ));
    // Consecutive members sharing one span are one group.
    let split = PackTrailer {
        kind: BlobKind::Data,
        seal_header: Vec::new(),
        entries: vec![entry(1, 5), entry(2, 6)],
    };
    let parsed = PackTrailer::decode(&split.encode().unwrap(), "p", None).unwrap();
    assert_eq!(
        parsed
            .entries
            .iter()
            .map(|e| (e.group_start, e.group_len))
            .collect::<Vec<_>>(),
        vec![(0, 11), (5, 11)]
    );
}

#[test]
fn version_1_packs_are_still_read() {
    let (pack, keys) = build(&[b"old pack blob".repeat(20)], BlobKind::Data);
    assert_eq!(&pack.bytes[8..10], &PACK_VERSION.to_le_bytes());
    let mut old = pack.bytes.clone();
    old[8..10].copy_from_slice(&1u16.to_le_bytes());
    let mut h = keys.mac_hasher(MacDomain::Pack);
    h.update(&old);
    let id = ChunkId(*h.finalize().as_bytes());
    assert_eq!(read_pack(&keys, &id, &old).unwrap(), pack.trailer);
    old[8..10].copy_from_slice(&3u16.to_le_bytes());
    let mut h = keys.mac_hasher(MacDomain::Pack);
    h.update(&old);
    let id = ChunkId(*h.finalize().as_bytes());
    assert!(matches!(
        read_pack(&keys, &id, &old),
        Err(Error::UnsupportedVersion { version: 3, .. })
    ));
}
