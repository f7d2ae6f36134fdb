//! Fuzz harnesses for every parser of bytes that come from storage: pack trailers (and the
//! blobs they locate), snapshot objects, index objects, key envelopes and key texts, the
//! repository config, tree blobs and account records.
//!
//! Each harness takes arbitrary bytes and must never panic. Most stored objects are
//! authenticated before they are parsed, so random bytes alone stop at the MAC check; each
//! harness therefore also wraps the input in a valid MAC under fixed test keys, which drives
//! it into the parser behind the check (what an attacker holding the server key, or a bug
//! of our own writer, could produce). Whatever decodes must encode again and decode to the
//! same value.
//!
//! The same functions run in two ways: as cargo-fuzz targets (`fuzz_targets/`, built with
//! the `libfuzzer` feature by `scripts/fuzz.sh` for long runs), and under proptest with
//! arbitrary bytes in the workspace tests (`tests/harness.rs`), which CI runs.

use backup_core::model::{AccountId, ChunkId, SnapshotId};
use backup_core::ports::{ContentOpener, ContentSealer, MacDomain, PlainCrypto, ServerKeys};
use backup_core::repo::{
    BlobCodec, CONFIG_MAGIC, FOOTER_LEN, FORMAT_VERSION, HEADER_LEN, PACK_MAGIC, PackTrailer,
    RepoConfig, SnapshotObject, TRAILER_MAGIC, Tree, TreeVersion, decode_account, decode_index,
    encode_index, read_pack, read_trailer, trailer_span,
};
use backup_crypto::{AccountKeys, MasterKey};

/// Blobs whose trailer claims a larger plaintext are not opened by the harness: decoding
/// reserves the claimed length, which the fuzzer's allocation limit would report.
const MAX_OPENED_RAW_LEN: u32 = 1 << 20;

fn keys() -> ServerKeys {
    ServerKeys::new([7; 32], [9; 32], 11)
}

/// `body` followed by a valid footer: the bytes a pack ends with.
fn authenticated_trailer(keys: &ServerKeys, body: &[u8]) -> Vec<u8> {
    let mut tail = body.to_vec();
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    tail.extend_from_slice(&len.to_le_bytes());
    tail.extend_from_slice(&keys.mac(MacDomain::Trailer, body));
    tail.extend_from_slice(TRAILER_MAGIC);
    debug_assert_eq!(tail.len(), body.len() + FOOTER_LEN);
    tail
}

/// Splits `data` at a point chosen by its first two bytes.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data {
        [a, b, rest @ ..] => {
            let at = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
            rest.split_at(at)
        }
        _ => (data, &[]),
    }
}

/// Pack trailers, pack headers and the blobs a trailer locates.
pub fn pack_trailer(data: &[u8]) {
    let keys = keys();
    // As stored bytes: footer, span and MAC checks.
    let _ = trailer_span(data, "fuzz");
    let _ = read_trailer(&keys, data, data.len() as u64, "fuzz");
    let _ = PackTrailer::decode(data, "fuzz", None);

    // Behind the MAC: `data` split into a pack body and a trailer, framed as a whole pack
    // and named by its keyed hash.
    let (body, trailer) = split(data);
    let mut pack = PACK_MAGIC.to_vec();
    pack.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    pack.extend_from_slice(body);
    pack.extend_from_slice(&authenticated_trailer(&keys, trailer));
    let id = ChunkId(keys.mac(MacDomain::Pack, &pack));
    let parsed = read_pack(&keys, &id, &pack);
    let from_tail = read_trailer(&keys, &pack, pack.len() as u64, "fuzz");
    if let Ok(t) = &parsed {
        assert_eq!(
            from_tail.as_ref().ok(),
            Some(t),
            "read_pack and read_trailer disagree"
        );
    }
    let Ok(t) = from_tail else { return };
    assert!(pack.len() >= HEADER_LEN);
    let again = PackTrailer::decode(&t.encode().expect("decoded trailer encodes"), "fuzz", None)
        .expect("encoded trailer decodes");
    assert_eq!(again, t);

    // Open every blob it locates: offsets were bounded by the parser, so slicing is safe.
    let crypto = PlainCrypto::new(self::keys());
    let Ok(session) = crypto.open_session(&t.seal_header) else {
        return;
    };
    let mut codec = BlobCodec::new(1).expect("zstd context");
    let small: Vec<_> = t
        .entries
        .iter()
        .filter(|e| e.raw_len <= MAX_OPENED_RAW_LEN && e.group_len <= MAX_OPENED_RAW_LEN)
        .copied()
        .collect();
    let mut one_by_one = Vec::with_capacity(small.len());
    for e in &small {
        let start = e.offset as usize;
        let sealed = pack[start..start + e.stored_len as usize].to_vec();
        let opened = codec.open_blob(&keys, session.as_ref(), e, sealed);
        if let Ok(plain) = &opened {
            assert_eq!(plain.len(), e.raw_len as usize);
            assert_eq!(keys.chunk_id(plain), e.id);
        }
        one_by_one.push(opened.ok());
    }
    // Opening the whole pack (each group once) gives the same blobs.
    let mut all = Vec::with_capacity(small.len());
    codec.open_all(&keys, session.as_ref(), &pack, &small, |_, opened| {
        all.push(opened.ok());
    });
    assert_eq!(all, one_by_one, "open_all and open_blob disagree");
}

/// Snapshot objects, raw and behind a valid MAC, opened with and without the content key.
pub fn snapshot(data: &[u8]) {
    let keys = keys();
    let crypto = PlainCrypto::new(self::keys());
    let account = AccountId::from_bytes([1; 16]);
    let id = SnapshotId::from_bytes([2; 16]);
    let _ = SnapshotObject::decode(&keys, Some(&crypto), account, id, data);

    let mut object = data.to_vec();
    object.extend_from_slice(&keys.mac(MacDomain::Snapshot, data));
    let opened = SnapshotObject::decode(&keys, Some(&crypto), account, id, &object);
    let header_only = SnapshotObject::decode(&keys, None, account, id, &object);
    if let Ok(o) = &opened {
        let h = header_only
            .as_ref()
            .expect("opened with the key but not without it");
        assert_eq!(h.snapshot, o.snapshot);
        assert_eq!(h.references, o.references);
        let session = crypto.begin().expect("plain session");
        let bytes = o
            .encode(&keys, session.as_ref())
            .expect("decoded snapshot encodes");
        let again = SnapshotObject::decode(&keys, Some(&crypto), account, id, &bytes)
            .expect("encoded snapshot decodes");
        assert_eq!(&again, o);
    }
}

/// Index objects, raw and behind a valid MAC (the MAC is also the object's name).
pub fn index(data: &[u8]) {
    let keys = keys();
    let _ = decode_index(&keys, &ChunkId([0; 32]), data);

    let mac = keys.mac(MacDomain::Index, data);
    let mut object = data.to_vec();
    object.extend_from_slice(&mac);
    if let Ok(packs) = decode_index(&keys, &ChunkId(mac), &object) {
        let (id, bytes) = encode_index(&keys, &packs).expect("decoded index encodes");
        assert_eq!(
            decode_index(&keys, &id, &bytes).expect("encoded index decodes"),
            packs
        );
    }
}

/// Key envelopes (checked up to their AEAD tag) and the master key and owner key texts.
pub fn key_envelope(data: &[u8]) {
    let master = MasterKey::from_bytes([5; 32]);
    let account = AccountId::from_bytes([1; 16]);
    let _ = AccountKeys::from_envelope(&master, account, data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = MasterKey::from_text(text);
        let owner = backup_core::model::OwnerKey::new(text.to_owned());
        let _ = backup_crypto::owner_key_account(&owner);
    }
}

/// The repository config (raw, and behind its magic and version), tree blobs and account
/// records (raw and behind a valid MAC).
pub fn config(data: &[u8]) {
    if let Ok(c) = RepoConfig::decode(data) {
        let again = RepoConfig::decode(&c.encode().expect("decoded config encodes"))
            .expect("encoded config decodes");
        assert_eq!(again, c);
    }
    let mut framed = CONFIG_MAGIC.to_vec();
    framed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    framed.extend_from_slice(data);
    let _ = RepoConfig::decode(&framed);

    // A tree of either version that decodes re-encodes (as version 2) to the same tree.
    for version in [TreeVersion::V1, TreeVersion::V2] {
        if let Ok(tree) = Tree::decode(data, &ChunkId([0; 32]), version) {
            let bytes = tree.encode().expect("decoded tree encodes");
            assert_eq!(
                Tree::decode(&bytes, &ChunkId([0; 32]), TreeVersion::V2)
                    .expect("encoded tree decodes"),
                tree
            );
        }
    }

    let keys = keys();
    let _ = decode_account(&keys, data);
    let mut record = data.to_vec();
    record.extend_from_slice(&keys.mac(MacDomain::Account, data));
    let _ = decode_account(&keys, &record);
}
