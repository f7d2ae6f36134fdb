//! End-to-end tests of the `backupctl` example binary: init, accounts with server-held and
//! owner-held keys, two backups, snapshots, restores, verification and the error paths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use backup_examples::{change_some_files, compare_trees, generate_sample_account};

mod server_support;
use server_support::{backupctl_path, copy_tree};

struct Ctl {
    bin: PathBuf,
    home: PathBuf,
    /// `--catalog URL`, when not the default.
    catalog: Option<String>,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.bin);
        command
            .env_remove("BACKUPCTL_CATALOG")
            .arg("--home")
            .arg(&self.home);
        if let Some(url) = &self.catalog {
            command.arg("--catalog").arg(url);
        }
        command.args(args).output().expect("backupctl runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "backupctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    fn fails(&self, args: &[&str]) -> String {
        self.failure(args).1
    }

    /// Like [`Ctl::fails`], with exit code `code`.
    fn fails_with(&self, code: i32, args: &[&str]) -> String {
        let (status, stderr) = self.failure(args);
        assert_eq!(status, Some(code), "backupctl {args:?}: {stderr}");
        stderr
    }

    /// Runs a command that must fail with a one-line error; its exit code and stderr.
    fn failure(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.run(args);
        assert!(!out.status.success(), "backupctl {args:?} should fail");
        let stderr = String::from_utf8(out.stderr).expect("UTF-8 errors");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "errors are one line: {stderr:?}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        (out.status.code(), stderr)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("valid JSON")
    }
}

fn setup(dir: &Path) -> Ctl {
    setup_with_catalog(dir, None)
}

fn setup_with_catalog(dir: &Path, catalog: Option<String>) -> Ctl {
    let ctl = Ctl {
        bin: backupctl_path(),
        home: dir.join("state"),
        catalog,
    };
    ctl.ok(&["init"]);
    let url = format!("file://{}", dir.join("destination").display());
    ctl.ok(&["destination", "add", "local", &url]);
    ctl
}

fn snapshot_ids(ctl: &Ctl, user: &str) -> Vec<String> {
    let snaps = ctl.json(&["snapshots", user, "--json"]);
    let list = snaps.as_array().expect("an array");
    for s in list {
        for field in ["id", "created", "kind", "locked", "items"] {
            assert!(s.get(field).is_some(), "snapshot JSON lacks {field}: {s}");
        }
    }
    list.iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

fn round_trip(ctl: &Ctl, dir: &Path, user: &str, encryption: &str, key: Option<&Path>) {
    let live = dir.join(format!("live-{user}"));
    generate_sample_account(&live, 200).expect("sample");
    let mut add = vec!["account", "add", user, "--encryption", encryption];
    let key_arg;
    if let Some(k) = key {
        key_arg = k.display().to_string();
        add.extend(["--key-out", &key_arg]);
    }
    ctl.ok(&add);
    let src = live.display().to_string();
    let first = ctl.json(&[
        "backup",
        user,
        "--layout",
        &src,
        "--destination",
        "local",
        "--json",
    ]);
    assert!(first["stats"]["bytes_new"].as_u64().unwrap() > 0);
    let before = dir.join(format!("before-{user}"));
    copy_tree(&live, &before);
    change_some_files(&live, 5).expect("change");
    let second = ctl.json(&[
        "backup",
        user,
        "--layout",
        &src,
        "--destination",
        "local",
        "--json",
    ]);
    // Only what changed is stored again: at most the changed files whole (content-defined
    // chunks may cover a whole file; where they fall depends on the account's chunker seed)
    // and the directory listings above them.
    let changed = changed_bytes(&before, &live);
    let second_new = second["stats"]["bytes_new"].as_u64().unwrap();
    assert!(
        second_new <= changed + (64 << 10),
        "the second backup deduplicates: {second_new} new bytes, {changed} bytes changed"
    );
    assert!(second_new < first["stats"]["bytes_new"].as_u64().unwrap());
    let ids = snapshot_ids(ctl, user);
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], first["id"].as_str().unwrap(), "oldest first");

    let mut key_args: Vec<String> = Vec::new();
    if let Some(k) = key {
        key_args = vec!["--key-file".into(), k.display().to_string()];
    }
    let target = dir.join(format!("restored-{user}"));
    let t = target.display().to_string();
    let mut args: Vec<&str> = vec!["restore", user, "--target", &t, "--snapshot", &ids[1]];
    args.extend(key_args.iter().map(String::as_str));
    ctl.ok(&args);
    assert_eq!(compare_trees(&live, &target).unwrap(), None);

    // Mixed: home from the first snapshot, databases from the second.
    let mixed = dir.join(format!("mixed-{user}"));
    let m = mixed.display().to_string();
    let home_item = format!("home={}", ids[0]);
    let db_item = format!("databases={}", &ids[1][..13]);
    let mut args: Vec<&str> = vec![
        "restore", user, "--target", &m, "--item", &home_item, "--item", &db_item,
    ];
    args.extend(key_args.iter().map(String::as_str));
    ctl.ok(&args);
    assert_eq!(
        compare_trees(&before.join("home"), &mixed.join("home")).unwrap(),
        None
    );
    assert_eq!(
        compare_trees(&live.join("databases"), &mixed.join("databases")).unwrap(),
        None
    );

    let mut args: Vec<&str> = vec!["verify", user, "--read-data"];
    args.extend(key_args.iter().map(String::as_str));
    let out = ctl.ok(&args);
    assert!(out.contains("ok"), "{out}");
    let structure = ctl.ok(&["verify", user]);
    assert!(structure.contains("ok"), "{structure}");
}

/// The bytes of the files under `after` that are new or differ from those under `before`.
fn changed_bytes(before: &Path, after: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(after).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let old = before.join(e.file_name());
        if ft.is_dir() {
            total += changed_bytes(&old, &e.path());
        } else if ft.is_file() {
            let data = std::fs::read(e.path()).unwrap();
            if std::fs::read(&old).ok().as_ref() != Some(&data) {
                total += data.len() as u64;
            }
        }
    }
    total
}

#[test]
fn server_key_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = setup(dir.path());
    round_trip(&ctl, dir.path(), "alice", "server", None);
    let accounts = ctl.json(&["account", "list", "--json"]);
    let a = &accounts.as_array().unwrap()[0];
    assert_eq!(a["username"], "alice");
    assert!(a["id"].as_str().unwrap().len() == 36);
}

#[test]
fn owner_key_round_trip_and_key_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = setup(dir.path());
    let bob_key = dir.path().join("bob.key");
    round_trip(&ctl, dir.path(), "bob", "remote", Some(&bob_key));
    let key_text = std::fs::read_to_string(&bob_key).unwrap();
    let state_files = walk_text(&ctl.home);
    assert!(
        !state_files.contains(key_text.trim()),
        "the owner's key is not kept in the state directory"
    );

    let ids = snapshot_ids(&ctl, "bob");
    let target = dir.path().join("no-key").display().to_string();
    let err = ctl.fails(&["restore", "bob", "--target", &target, "--snapshot", &ids[0]]);
    assert!(
        err.contains("key is needed") || err.contains("private key"),
        "{err}"
    );
    assert!(!Path::new(&target).join("home").exists());

    // Another account's owner key is refused, naming the mismatch.
    let carol_key = dir.path().join("carol.key");
    ctl.ok(&[
        "account",
        "add",
        "carol",
        "--encryption",
        "remote",
        "--key-out",
        &carol_key.display().to_string(),
    ]);
    let err = ctl.fails(&[
        "restore",
        "bob",
        "--target",
        &target,
        "--snapshot",
        &ids[0],
        "--key-file",
        &carol_key.display().to_string(),
    ]);
    assert!(
        err.contains("wrong key") && err.contains("account"),
        "{err}"
    );

    // Printing the key instead of writing it shows it once on stdout.
    let out = ctl.ok(&["account", "add", "dave", "--encryption", "remote"]);
    assert!(out.contains("bkup-owner-key-v1:"), "{out}");
}

fn walk_text(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            all.push_str(&walk_text(&e.path()));
        } else {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()));
        }
    }
    all
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl {
        bin: backupctl_path(),
        home: dir.path().join("state"),
        catalog: None,
    };
    let err = ctl.fails(&["account", "list"]);
    assert!(err.contains("init"), "{err}");
    ctl.ok(&["init"]);
    assert!(ctl.ok(&["init"]).contains("already"));
    ctl.fails_with(2, &["destination", "add", "x", "gopher://nowhere"]);
    // Destination URLs are explicit: a plain path is refused, naming the form to use.
    let plain = dir.path().join("dest").display().to_string();
    let err = ctl.fails_with(2, &["destination", "add", "x", &plain]);
    assert!(err.contains("file:///"), "{err}");
    assert!(!dir.path().join("dest").exists(), "nothing is created");
    ctl.fails(&["account", "add", "bad name"]);
    ctl.fails(&["account", "add", "eve", "--encryption", "rot13"]);
    ctl.fails(&["account", "add", "eve", "--exclude", "a{"]);
    ctl.ok(&["account", "add", "eve"]);
    // Usernames are unique.
    let err = ctl.fails(&["account", "add", "eve"]);
    assert!(err.contains("eve"), "{err}");
    ctl.fails(&[
        "backup",
        "eve",
        "--source",
        "/nonexistent",
        "--destination",
        "nowhere",
    ]);
    ctl.fails(&["snapshots", "nobody"]);
    let t = dir.path().join("t").display().to_string();
    ctl.fails(&["restore", "eve", "--target", &t, "--item", "home"]);
    ctl.fails(&["restore", "eve", "--target", &t, "--snapshot", "0000"]);
    let empty: Vec<serde_json::Value> =
        serde_json::from_str(&ctl.ok(&["snapshots", "eve", "--json"])).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn plain_directory_is_backed_up_as_home_with_excludes() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = setup(dir.path());
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("cache")).unwrap();
    std::fs::write(site.join("index.html"), b"<h1>hi</h1>").unwrap();
    std::fs::write(site.join("cache/x"), b"cached").unwrap();
    std::fs::write(site.join("debug.log"), b"log").unwrap();
    ctl.ok(&[
        "account",
        "add",
        "frank",
        "--encryption",
        "none",
        "--exclude",
        "cache",
        "--exclude",
        "*.log",
    ]);
    ctl.ok(&[
        "backup",
        "frank",
        "--source",
        &site.display().to_string(),
        "--destination",
        "local",
    ]);
    let id = snapshot_ids(&ctl, "frank").remove(0);
    let target = dir.path().join("out");
    let t = target.display().to_string();
    let dry = ctl.ok(&[
        "restore",
        "frank",
        "--target",
        &t,
        "--snapshot",
        &id,
        "--dry-run",
    ]);
    assert!(dry.contains("would restore 1 files"), "{dry}");
    assert!(!target.exists(), "a dry run writes nothing");
    ctl.ok(&["restore", "frank", "--target", &t, "--snapshot", &id]);
    assert_eq!(
        std::fs::read(target.join("home/index.html")).unwrap(),
        b"<h1>hi</h1>"
    );
    assert!(!target.join("home/cache").exists());
    assert!(!target.join("home/debug.log").exists());
}

/// `--catalog` (or `BACKUPCTL_CATALOG`) puts the catalog elsewhere; without it the state
/// directory's `catalog.db` is used; a URL of no known kind is a one-line error.
#[test]
fn catalog_flag_selects_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.db");
    let url = format!("sqlite://{}", elsewhere.display());
    let ctl = setup_with_catalog(dir.path(), Some(url.clone()));
    ctl.ok(&["account", "add", "frank"]);
    assert!(elsewhere.exists());
    assert!(!ctl.home.join("catalog.db").exists());

    // The variable selects it too.
    let out = Command::new(&ctl.bin)
        .env("BACKUPCTL_CATALOG", &url)
        .arg("--home")
        .arg(&ctl.home)
        .args(["account", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["username"], "frank");

    // Without either: the default catalog in the state directory, which is empty.
    let default = Ctl {
        catalog: None,
        bin: ctl.bin.clone(),
        home: ctl.home.clone(),
    };
    assert_eq!(
        default.json(&["account", "list", "--json"]),
        serde_json::json!([])
    );
    assert!(ctl.home.join("catalog.db").exists());

    let bad = Ctl {
        catalog: Some("mysql://user:hunter2@db/catalog".into()),
        bin: ctl.bin.clone(),
        home: ctl.home.clone(),
    };
    let err = bad.fails(&["account", "list"]);
    assert!(
        err.contains("postgres://") && err.contains("sqlite://"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

/// The whole round trip with the catalog in PostgreSQL (a fresh schema of the server that
/// `scripts/test.sh` starts).
#[test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
fn postgres_catalog_round_trip() {
    let Some(url) = std::env::var("BACKUP_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        panic!(
            "BACKUP_TEST_PG_URL is not set: this test needs PostgreSQL; run scripts/test.sh, \
             which starts a private server and sets it"
        );
    };
    let schema = format!(
        "cli_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let admin = runtime.block_on(async {
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin
    });
    let sep = if url.contains('?') { '&' } else { '?' };
    let catalog = format!("{url}{sep}options[search_path]={schema}");

    let dir = tempfile::tempdir().unwrap();
    let ctl = setup_with_catalog(dir.path(), Some(catalog));
    round_trip(&ctl, dir.path(), "grace", "server", None);
    assert!(
        !ctl.home.join("catalog.db").exists(),
        "the catalog is in PostgreSQL"
    );
    let accounts = ctl.json(&["account", "list", "--json"]);
    assert_eq!(accounts[0]["username"], "grace");

    runtime.block_on(async {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
    });
}

/// Every regular file under `dir` (the staging directory left out) by relative path, with
/// its content and permission bits.
fn files_with_modes(dir: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".bkrestore-") {
                continue;
            }
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                if let Ok(data) = std::fs::read(&p) {
                    out.insert(rel, (data, meta.permissions().mode() & 0o7777));
                }
            }
        }
    }
    out
}

/// Staging directories left under `dir`, with whether each is private: 0700, so nothing in
/// it can be reached by another user. (A file in it may already carry its final mode: it is
/// given its attributes in staging, then renamed into place, and a kill can fall between.)
fn staging_left(dir: &Path) -> Vec<(PathBuf, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if e.file_name().to_string_lossy().starts_with(".bkrestore-") {
                let private = meta.is_dir() && meta.permissions().mode() & 0o777 == 0o700;
                out.push((p, private));
            } else if meta.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Restores killed (SIGKILL) at many points: no file is ever under its final name with
/// other content or a looser mode than the snapshot's, what a killed restore leaves is
/// private, and the next plain or merge restore leaves no temporary behind.
#[test]
fn killed_restores_never_expose_partial_files_and_leave_nothing_behind() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ctl = setup(dir.path());
    let home = dir.path().join("alice");
    for i in 0..1500usize {
        let sub = home.join(format!("public_html/d{}", i % 30));
        std::fs::create_dir_all(&sub).unwrap();
        let p = sub.join(format!("f{i}.php"));
        let size = 200 + (i * 7919) % 60_000;
        let data: Vec<u8> = (0..size).map(|j| (j * 31 + i) as u8).collect();
        std::fs::write(&p, data).unwrap();
        let mode = if i % 5 == 0 { 0o600 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let source = files_with_modes(&home);
    ctl.ok(&["account", "add", "alice", "--encryption", "server"]);
    let h = home.display().to_string();
    ctl.ok(&["backup", "alice", "--source", &h, "--destination", "local"]);
    let id = snapshot_ids(&ctl, "alice").remove(0);
    let check = |target: &Path, what: &str| {
        for (rel, (data, mode)) in files_with_modes(&target.join("home")) {
            let (want, want_mode) = source
                .get(&rel)
                .unwrap_or_else(|| panic!("{what}: {rel} is not in the snapshot"));
            assert!(&data == want, "{what}: {rel} visible with other content");
            assert_eq!(mode, *want_mode, "{what}: {rel} visible with mode {mode:o}");
        }
        for (p, private) in staging_left(target) {
            assert!(private, "{what}: {} is not private", p.display());
        }
    };
    let mut killed_midway = 0;
    for attempt in 0..16u64 {
        let target = dir.path().join(format!("t{attempt}"));
        let t = target.display().to_string();
        let merge = attempt % 2 == 1;
        if merge {
            // A merge over an older, different copy of some files.
            std::fs::create_dir_all(target.join("home/public_html/d1")).unwrap();
            std::fs::write(target.join("home/public_html/d1/f1.php"), b"old").unwrap();
        }
        let mut args = vec!["restore", "alice", "--target", &t, "--snapshot", &id];
        if merge {
            args.push("--merge");
        }
        let mut child = Command::new(&ctl.bin)
            .env_remove("BACKUPCTL_CATALOG")
            .arg("--home")
            .arg(&ctl.home)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20 + attempt * 25));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        if !finished {
            killed_midway += 1;
        }
        if !merge {
            check(&target, &format!("killed restore {attempt}"));
        }
        // The next restore, plain or merge, completes and leaves nothing behind.
        let mut again = vec!["restore", "alice", "--target", &t, "--snapshot", &id];
        if attempt % 4 < 2 {
            again.push("--merge");
        }
        ctl.ok(&again);
        assert!(
            staging_left(&target).is_empty(),
            "attempt {attempt}: a temporary was left"
        );
        assert_eq!(
            files_with_modes(&target.join("home")),
            source,
            "attempt {attempt}: the restore after a killed one differs"
        );
    }
    assert!(
        killed_midway > 0,
        "no restore was killed before it finished"
    );
}
