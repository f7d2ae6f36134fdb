//! Verification: structure (every blob a snapshot references is in some pack trailer) and,
//! optionally, data (every pack read back and checked against its keyed id; with the content
//! key, every blob opened and authenticated too).

use std::collections::HashSet;

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::model::{ChunkId, PackId, SnapshotId};
use crate::repo::{AccountRepo, BlobCodec, References};

/// What to check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Read packs back (not only the trailers).
    pub read_data: bool,
    /// With `read_data`, read only about this percentage of the packs, chosen at random each
    /// run (1-100); `None` reads every pack.
    pub sample_percent: Option<u8>,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    /// The object concerned (snapshot, pack, blob).
    pub object: String,
    /// What is wrong.
    pub reason: String,
}

/// What a verification saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Packs known (and read, with `read_data`).
    pub packs: u64,
    /// Blobs referenced by the snapshots.
    pub blobs_referenced: u64,
    /// Blobs opened and authenticated (with `read_data` and the content key).
    pub blobs_authenticated: u64,
    /// Bytes read with `read_data`.
    pub bytes_read: u64,
    /// Problems; empty means the repository verified.
    pub problems: Vec<VerifyProblem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, object: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(VerifyProblem {
            object: object.into(),
            reason: reason.into(),
        });
    }
}

/// Verifies `snapshots` of the account (all of its snapshot objects when empty). Problems in
/// the data are reported, not returned as errors; storage failures are errors.
pub async fn verify(
    repo: &AccountRepo,
    snapshots: &[SnapshotId],
    options: VerifyOptions,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let ids = if snapshots.is_empty() {
        repo.list_snapshots().await?
    } else {
        snapshots.to_vec()
    };
    let locator = repo.load_locator().await?;
    let mut referenced: HashSet<ChunkId> = HashSet::new();
    for id in &ids {
        report.snapshots += 1;
        match repo.load_snapshot(*id).await {
            Ok(obj) => {
                let mut mine: HashSet<ChunkId> = HashSet::new();
                match &obj.references {
                    References::Packs(refs) => {
                        for r in refs {
                            let Some(trailer) = locator.pack(&r.pack) else {
                                report.problem(
                                    format!("snapshot {id}"),
                                    format!("references pack {}, which is missing", r.pack),
                                );
                                continue;
                            };
                            for i in r.indices() {
                                match trailer.entries.get(i) {
                                    Some(e) => {
                                        mine.insert(e.id);
                                    }
                                    None => report.problem(
                                        format!("snapshot {id}"),
                                        format!(
                                            "references entry {i} of pack {}, which has {}",
                                            r.pack,
                                            trailer.entries.len()
                                        ),
                                    ),
                                }
                            }
                        }
                    }
                    References::Blobs(ids) => {
                        for r in ids {
                            if !locator.contains(r) {
                                report.problem(
                                    format!("snapshot {id}"),
                                    format!("blob {r} is in no pack"),
                                );
                            }
                        }
                        mine.extend(ids.iter().copied());
                    }
                }
                if let Some(content) = &obj.content {
                    for (kind, root) in &content.roots {
                        if !mine.contains(root) {
                            report.problem(
                                format!("snapshot {id}"),
                                format!("{kind} root {root} is not among its references"),
                            );
                        }
                    }
                }
                referenced.extend(mine);
            }
            Err(e @ (Error::Integrity { .. } | Error::UnsupportedVersion { .. })) => {
                report.problem(format!("snapshot {id}"), e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    report.blobs_referenced = referenced.len() as u64;
    let mut packs: Vec<PackId> = locator.packs().map(|(id, _)| *id).collect();
    report.packs = packs.len() as u64;
    if !options.read_data {
        return Ok(report);
    }
    if let Some(percent) = options.sample_percent {
        let percent = u128::from(percent.clamp(1, 100));
        // A fresh random threshold per pack: an attacker cannot predict which packs are read.
        packs.retain(|_| u128::from(uuid::Uuid::new_v4().as_u128() as u8) * 100 < percent * 256);
    }
    let opener = repo.opener().cloned();
    let keys_holder = repo.sealer().clone();
    let mut fetched = futures::stream::iter(packs)
        .map(|id| async move { (id, repo.get_pack(&id).await) })
        .buffer_unordered(4);
    let mut codec = BlobCodec::new(1)?;
    while let Some((id, result)) = fetched.next().await {
        let (bytes, trailer) = match result {
            Ok(x) => x,
            Err(e @ (Error::Integrity { .. } | Error::UnsupportedVersion { .. })) => {
                report.problem(format!("pack {id}"), e.to_string());
                continue;
            }
            Err(e) => return Err(e),
        };
        report.bytes_read += bytes.len() as u64;
        let Some(opener) = &opener else { continue };
        let session = match opener.open_session(&trailer.seal_header) {
            Ok(s) => s,
            Err(e) => {
                report.problem(format!("pack {id}"), e.to_string());
                continue;
            }
        };
        codec.open_all(
            keys_holder.server_keys(),
            session.as_ref(),
            &bytes,
            &trailer.entries,
            |e, opened| match opened {
                Ok(_) => report.blobs_authenticated += 1,
                Err(err) => report.problem(format!("blob {} in pack {id}", e.id), err.to_string()),
            },
        );
    }
    Ok(report)
}
