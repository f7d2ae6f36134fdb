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
        let (c, enc) = codec.encode(b);
        w.add(crypto.server_keys().chunk_id(b), c, b.len(), enc)
            .unwrap();
    }
    (w.finish(crypto.server_keys()).unwrap(), keys())
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

#[test]
fn compression_is_skipped_when_it_does_not_shrink() {
    let mut codec = BlobCodec::new(1).unwrap();
    let text = b"abcabcabc".repeat(1000);
    assert_eq!(codec.encode(&text).0, Compression::Zstd);
    let mut x = 1u64;
    let random: Vec<u8> = (0..10_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect();
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
    let (c, enc) = codec.encode_owned(random.clone());
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
