//! Listings: a recursive walk with several directories read at once, and one level with
//! common prefixes.

use std::collections::VecDeque;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, FuturesUnordered, StreamExt};
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{File, StatusCode};

use super::transfer::{is_directory, is_regular, is_temp_name, sftp_error};
use super::{STORE, SftpStore};

/// Directories read at once by a recursive listing.
const WALK_CONCURRENCY: usize = 8;

/// The entries of a directory (without `.` and `..`); `None` if it does not exist or is
/// not a directory.
async fn read_dir(store: &SftpStore, dir: &Path) -> object_store::Result<Option<Vec<File>>> {
    let lease = store.lease().await?;
    let remote = store.remote(dir);
    let handle = match lease.sftp.opendir(remote.as_str()).await {
        Ok(h) => h.handle,
        Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => return Ok(None),
        Err(e) => return Err(sftp_error(&lease, "opendir", &remote, e).into_store(STORE)),
    };
    let mut entries = Vec::new();
    let outcome = loop {
        match lease.sftp.readdir(handle.as_str()).await {
            Ok(name) => entries.extend(
                name.files
                    .into_iter()
                    .filter(|f| f.filename != "." && f.filename != ".."),
            ),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(()),
            Err(e) => break Err(sftp_error(&lease, "readdir", &remote, e)),
        }
    };
    let _ = lease.sftp.close(handle).await;
    outcome.map_err(|e| e.into_store(STORE))?;
    Ok(Some(entries))
}

/// The object path of an entry of `dir`, if its name is a valid path segment.
fn child(dir: &Path, name: &str) -> Option<Path> {
    let joined = if dir.as_ref().is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    };
    match Path::parse(&joined) {
        Ok(p) => Some(p),
        Err(_) => {
            tracing::debug!(name, "sftp listing: skipping a name that is no object key");
            None
        }
    }
}

/// What one directory holds: objects and subdirectories.
fn split(dir: &Path, entries: Vec<File>) -> (Vec<ObjectMeta>, Vec<Path>) {
    let mut objects = Vec::new();
    let mut dirs = Vec::new();
    for entry in entries {
        if is_directory(&entry.attrs) {
            dirs.extend(child(dir, &entry.filename));
        } else if is_regular(&entry.attrs)
            && !is_temp_name(&entry.filename)
            && let Some(location) = child(dir, &entry.filename)
        {
            objects.push(SftpStore::meta(&location, &entry.attrs));
        }
    }
    (objects, dirs)
}

type DirRead = BoxFuture<'static, object_store::Result<(Path, Option<Vec<File>>)>>;

struct Walk {
    store: SftpStore,
    pending: VecDeque<Path>,
    running: FuturesUnordered<DirRead>,
    ready: VecDeque<ObjectMeta>,
    failed: bool,
}

impl Walk {
    fn start(&mut self) {
        while self.running.len() < WALK_CONCURRENCY {
            let Some(dir) = self.pending.pop_front() else {
                break;
            };
            let store = self.store.clone();
            self.running.push(Box::pin(async move {
                let entries = read_dir(&store, &dir).await?;
                Ok((dir, entries))
            }));
        }
    }
}

/// Every object under `prefix` (whole segments), in no particular order.
pub(super) fn walk(
    store: SftpStore,
    prefix: Path,
) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
    let walk = Walk {
        store,
        pending: VecDeque::from([prefix]),
        running: FuturesUnordered::new(),
        ready: VecDeque::new(),
        failed: false,
    };
    stream::unfold(walk, |mut w| async move {
        loop {
            if let Some(meta) = w.ready.pop_front() {
                return Some((Ok(meta), w));
            }
            if w.failed {
                return None;
            }
            w.start();
            match w.running.next().await? {
                Err(e) => {
                    w.failed = true;
                    return Some((Err(e), w));
                }
                Ok((_, None)) => {}
                Ok((dir, Some(entries))) => {
                    let (objects, dirs) = split(&dir, entries);
                    w.ready.extend(objects);
                    w.pending.extend(dirs);
                }
            }
        }
    })
    .boxed()
}

/// The objects directly under `prefix` and the prefixes one level down, sorted.
pub(super) async fn one_level(store: &SftpStore, prefix: Path) -> object_store::Result<ListResult> {
    let entries = read_dir(store, &prefix).await?.unwrap_or_default();
    let (mut objects, mut common_prefixes) = split(&prefix, entries);
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    common_prefixes.sort();
    Ok(ListResult {
        common_prefixes,
        objects,
        extensions: Default::default(),
    })
}
