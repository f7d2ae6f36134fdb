//! Owner names: recorded with a snapshot (the names of the ids its trees hold) and used by a
//! restore onto another server to map owners by name. Read from `/etc/passwd` and
//! `/etc/group`, the files a hosting server keeps its accounts in, by hand: two
//! colon-separated files need no crate (accounts from other NSS sources are kept by id).

use std::collections::{BTreeSet, HashMap};

use crate::repo::{Owner, OwnerNames};

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// `(name, id)` of every entry of a passwd or group file.
fn entries(file: &str) -> Vec<(String, u32)> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id: u32 = fields.nth(1)?.parse().ok()?;
            (!name.is_empty()).then(|| (name.to_owned(), id))
        })
        .collect()
}

fn names(file: &str, ids: &BTreeSet<u32>) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = entries(file)
        .into_iter()
        .filter(|(_, id)| ids.contains(id))
        .map(|(name, id)| (id, name))
        .collect();
    out.sort();
    out.dedup_by_key(|(id, _)| *id);
    out
}

/// The names of the users and groups in `owners` (ids without a name are left out).
pub(crate) fn names_of(owners: &BTreeSet<Owner>) -> OwnerNames {
    let uids: BTreeSet<u32> = owners.iter().map(|o| o.uid).collect();
    let gids: BTreeSet<u32> = owners.iter().map(|o| o.gid).collect();
    OwnerNames {
        users: names(PASSWD, &uids),
        groups: names(GROUP, &gids),
    }
}

/// Recorded id to this server's id, for the recorded names this server has under another
/// id (`recorded` pairs come from the snapshot).
fn by_name(file: &str, recorded: &[(u32, String)]) -> HashMap<u32, u32> {
    let local: HashMap<String, u32> = entries(file).into_iter().collect();
    recorded
        .iter()
        .filter_map(|(id, name)| {
            let here = *local.get(name)?;
            (here != *id).then_some((*id, here))
        })
        .collect()
}

/// How recorded owners map to this server's by name: users, then groups.
pub(crate) fn map_by_name(names: &OwnerNames) -> (HashMap<u32, u32>, HashMap<u32, u32>) {
    (by_name(PASSWD, &names.users), by_name(GROUP, &names.groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded name this server has under another id maps to it; a name it has under the
    /// same id, or does not have, does not.
    #[test]
    fn owners_map_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/bash\nmailnull:x:47:47::/var/spool:/sbin/nologin\n\
             apache:x:48:48::/usr/share/httpd:/sbin/nologin\nbroken line\n",
        )
        .unwrap();
        let file = passwd.to_str().unwrap();
        let recorded = vec![
            (0, "root".to_owned()),
            (33, "apache".to_owned()),
            (500, "gone".to_owned()),
        ];
        let map = by_name(file, &recorded);
        assert_eq!(map.get(&33), Some(&48));
        assert_eq!(map.get(&0), None);
        assert_eq!(map.get(&500), None);
        assert_eq!(
            names(file, &[48, 47, 9].into_iter().collect()),
            vec![(47, "mailnull".to_owned()), (48, "apache".to_owned())]
        );
    }
}
