//! Criterion micro-benchmarks of the per-blob primitives: keyed chunk ids, compression,
//! sealing (X25519 + XChaCha20-Poly1305) and opening, and pack write / read.
//!
//! `cargo bench -p backup-benches --bench primitives`

use std::hint::black_box;

use backup_core::model::{AccountId, EncryptionMode};
use backup_core::ports::{ContentSealer, PlainCrypto, ServerKeys};
use backup_core::repo::{BlobCodec, BlobKind, PackWriter, read_pack};
use backup_crypto::AccountKeys;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1 << 20;

fn random(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn text(n: usize) -> Vec<u8> {
    let words = [
        &b"account "[..],
        b"backup ",
        b"restore ",
        b"hosting ",
        b"snapshot\n",
    ];
    let mut out = Vec::with_capacity(n);
    let mut i = 7usize;
    while out.len() < n {
        out.extend_from_slice(words[i % words.len()]);
        i = i.wrapping_mul(31).wrapping_add(11);
    }
    out.truncate(n);
    out
}

fn primitives(c: &mut Criterion) {
    let data = random(MIB);
    let prose = text(MIB);
    let keys = ServerKeys::new([1; 32], [2; 32], 3);
    let mut g = c.benchmark_group("per MiB");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("keyed chunk id", |b| {
        b.iter(|| keys.chunk_id(black_box(&data)))
    });
    let mut codec = BlobCodec::new(1).expect("zstd");
    g.bench_function("encode random (zstd-1, skipped)", |b| {
        b.iter(|| codec.encode(black_box(&data)))
    });
    g.bench_function("encode text (zstd-1)", |b| {
        b.iter(|| codec.encode(black_box(&prose)))
    });

    g.finish();

    // The dataset's small text files (1-50 KiB, one blob each) at the levels considered.
    let pages: Vec<Vec<u8>> = (0..64)
        .map(|i| backup_benches::dataset::text(i, 1024 + (i as usize * 797) % (49 * 1024)))
        .collect();
    let total: usize = pages.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("small text files");
    g.throughput(Throughput::Bytes(total as u64));
    for level in [1, 3] {
        let mut codec = BlobCodec::new(level).expect("zstd");
        g.bench_function(format!("encode (zstd-{level})"), |b| {
            b.iter(|| {
                pages
                    .iter()
                    .map(|p| codec.encode(black_box(p)).1.len())
                    .sum::<usize>()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("per MiB");
    g.throughput(Throughput::Bytes(MIB as u64));
    let (account_keys, _) =
        AccountKeys::generate(AccountId::new(), EncryptionMode::ServerKey).expect("keys");
    let sealer = account_keys.sealer();
    let opener = account_keys.opener(None).expect("opener");
    let session = sealer.begin().expect("session");
    g.bench_function("seal", |b| {
        b.iter(|| {
            let mut buf = data.clone();
            session.seal(b"aad", &mut buf).expect("seal");
            buf
        })
    });
    let mut sealed = data.clone();
    session.seal(b"aad", &mut sealed).expect("seal");
    let open = opener.open_session(session.header()).expect("open session");
    g.bench_function("open", |b| {
        b.iter(|| {
            let mut buf = sealed.clone();
            open.open(b"aad", &mut buf).expect("open");
            buf
        })
    });
    g.finish();

    let plain = PlainCrypto::new(ServerKeys::new([1; 32], [2; 32], 3));
    let blobs: Vec<Vec<u8>> = (0..16).map(|i| random(MIB + i)).collect();
    let mut g = c.benchmark_group("pack of 16 MiB");
    g.throughput(Throughput::Bytes(16 * MIB as u64));
    g.sample_size(10);
    g.bench_function("write", |b| {
        b.iter(|| {
            let mut w = PackWriter::new(BlobKind::Data, plain.begin().expect("s"), 17 * MIB);
            for blob in &blobs {
                let id = plain.server_keys().chunk_id(blob);
                w.add(id, backup_core::repo::Compression::None, blob.len(), blob)
                    .expect("add");
            }
            w.finish(plain.server_keys()).expect("finish")
        })
    });
    let mut w = PackWriter::new(BlobKind::Data, plain.begin().expect("s"), 17 * MIB);
    for blob in &blobs {
        let id = plain.server_keys().chunk_id(blob);
        w.add(id, backup_core::repo::Compression::None, blob.len(), blob)
            .expect("add");
    }
    let pack = w.finish(plain.server_keys()).expect("finish");
    g.bench_function("read and authenticate", |b| {
        b.iter(|| read_pack(plain.server_keys(), &pack.id, black_box(&pack.bytes)).expect("read"))
    });
    g.finish();
}

criterion_group!(benches, primitives);
criterion_main!(benches);
