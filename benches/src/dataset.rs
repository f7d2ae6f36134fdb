//! A deterministic dataset shaped like a hosting server's accounts: many small compressible
//! text files, a few large incompressible files, exact duplicates, a copy shifted by a few
//! bytes, a large log file.

use std::path::Path;

/// What was generated.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatasetStats {
    /// Regular files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
}

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn random(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&str; 32] = [
            "the",
            "of",
            "and",
            "account",
            "backup",
            "server",
            "hosting",
            "panel",
            "restore",
            "snapshot",
            "mail",
            "domain",
            "database",
            "index",
            "page",
            "user",
            "cache",
            "theme",
            "plugin",
            "order",
            "customer",
            "invoice",
            "product",
            "price",
            "<div>",
            "</div>",
            "class=\"row\"",
            "function",
            "return",
            "$value",
            "2026-11-22",
            "GET /index.php",
        ];
        let mut out = Vec::with_capacity(n + 32);
        while out.len() < n {
            let r = self.next();
            out.extend_from_slice(WORDS[(r % 32) as usize].as_bytes());
            out.push(if r.is_multiple_of(11) { b'\n' } else { b' ' });
            if r.is_multiple_of(97) {
                out.extend_from_slice(format!("{}", r % 100_000).as_bytes());
            }
        }
        out.truncate(n);
        out
    }
}

fn write(root: &Path, rel: &str, data: &[u8], stats: &mut DatasetStats) -> std::io::Result<()> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, data)?;
    stats.files += 1;
    stats.bytes += data.len() as u64;
    Ok(())
}

/// `n` bytes of the dataset's text (random words, markup and numbers), from `seed`: the
/// kind of data most of the dataset's small files hold.
pub fn text(seed: u64, n: usize) -> Vec<u8> {
    Gen(seed | 1).text(n)
}

/// Writes the dataset under `root`; `scale` 1.0 is about 1 GiB in about 22,000 files.
pub fn generate(root: &Path, scale: f64) -> std::io::Result<DatasetStats> {
    let mut s = DatasetStats::default();
    let mut g = Gen(0x0123_4567_89ab_cdef);
    let small = (20_000.0 * scale) as usize;
    for i in 0..small {
        let n = 1024 + (g.next() % (49 * 1024)) as usize;
        let data = g.text(n);
        write(
            root,
            &format!("site{}/dir{}/page{i}.html", i % 20, (i / 20) % 50),
            &data,
            &mut s,
        )?;
    }
    let big = [
        (10usize << 20),
        (100 << 20),
        (75 << 20),
        (50 << 20),
        (25 << 20),
    ];
    let mut kept_75 = Vec::new();
    let mut kept_50 = Vec::new();
    for (i, size) in big.iter().enumerate() {
        let n = (*size as f64 * scale) as usize;
        let data = g.random(n);
        write(root, &format!("media/video{i}.bin"), &data, &mut s)?;
        if *size == 75 << 20 {
            kept_75 = data;
        } else if *size == 50 << 20 {
            kept_50 = data;
        }
    }
    // An exact duplicate and a copy shifted by 4,099 bytes.
    write(root, "media/copy-of-video2.bin", &kept_75, &mut s)?;
    let mut shifted = g.random(4099);
    shifted.extend_from_slice(&kept_50);
    write(root, "media/shifted-video3.bin", &shifted, &mut s)?;
    let log = g.text((60.0 * scale) as usize * (1 << 20));
    write(root, "logs/access.log", &log, &mut s)?;
    // Copies of 2,000 text files under another site.
    let copies = (2_000.0 * scale) as usize;
    for i in 0..copies {
        let src = root.join(format!("site{}/dir{}/page{i}.html", i % 20, (i / 20) % 50));
        let data = std::fs::read(src)?;
        write(root, &format!("staging/page{i}.html"), &data, &mut s)?;
    }
    Ok(s)
}

/// Changes 1 % of the small files (appends a line) and returns how many.
pub fn change_one_percent(root: &Path, scale: f64) -> std::io::Result<u64> {
    let small = (20_000.0 * scale) as usize;
    let mut changed = 0;
    for i in (0..small).step_by(100) {
        let p = root.join(format!("site{}/dir{}/page{i}.html", i % 20, (i / 20) % 50));
        let mut data = std::fs::read(&p)?;
        data.extend_from_slice(format!("\n<!-- changed {i} -->\n").as_bytes());
        std::fs::write(&p, data)?;
        changed += 1;
    }
    Ok(changed)
}

/// Which dataset the end-to-end runner generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// The hosting-shaped dataset of [`generate`]: small pages, large media, a log, copies.
    Hosting,
    /// [`generate_small_files`]: only small files, where per-file costs (metadata, opens,
    /// renames) dominate.
    SmallFiles,
}

impl Dataset {
    /// Generates the dataset under `root`.
    pub fn generate(self, root: &Path, scale: f64) -> std::io::Result<DatasetStats> {
        match self {
            Dataset::Hosting => generate(root, scale),
            Dataset::SmallFiles => generate_small_files(root, scale),
        }
    }

    /// Changes 1 % of its files; returns how many.
    pub fn change_one_percent(self, root: &Path, scale: f64) -> std::io::Result<u64> {
        match self {
            Dataset::Hosting => change_one_percent(root, scale),
            Dataset::SmallFiles => change_one_percent_of_small_files(root, scale),
        }
    }
}

/// Files of the small-files dataset at scale 1.
const SMALL_FILES: f64 = 40_000.0;

fn small_file_path(i: usize) -> String {
    format!("site{}/dir{}/file{i}.php", i % 20, (i / 20) % 100)
}

/// 40,000 files (at scale 1) of 0.5-16 KiB of text in 2,000 directories: a home of many
/// small scripts, templates and mails.
pub fn generate_small_files(root: &Path, scale: f64) -> std::io::Result<DatasetStats> {
    let mut s = DatasetStats::default();
    let mut g = Gen(0x5111_f11e_0000_0040);
    for i in 0..(SMALL_FILES * scale) as usize {
        let n = 512 + (g.next() % (15 * 1024 + 512)) as usize;
        let data = g.text(n);
        write(root, &small_file_path(i), &data, &mut s)?;
    }
    Ok(s)
}

fn change_one_percent_of_small_files(root: &Path, scale: f64) -> std::io::Result<u64> {
    let mut changed = 0;
    for i in (0..(SMALL_FILES * scale) as usize).step_by(100) {
        let p = root.join(small_file_path(i));
        let mut data = std::fs::read(&p)?;
        data.extend_from_slice(format!("\n// changed {i}\n").as_bytes());
        std::fs::write(&p, data)?;
        changed += 1;
    }
    Ok(changed)
}

/// The directory under which [`change_two_percent`] creates one directory per round; the
/// hosting dataset has none, so removing it and generating again resets the dataset.
pub const ROUNDS_DIR: &str = "uploads";

/// How many rounds a round's directory lives: round `r` deletes the directory of round
/// `r - ROUND_DIRECTORY_LIFETIME`.
pub const ROUND_DIRECTORY_LIFETIME: u64 = 5;

/// What one round of [`change_two_percent`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundStats {
    /// Files created in the round's new directory.
    pub added_files: u64,
    /// Their bytes.
    pub added_bytes: u64,
    /// Files deleted with an earlier round's directory.
    pub deleted_files: u64,
    /// Pages changed (a line appended).
    pub changed_files: u64,
}

/// One round of churn of the hosting dataset under `root` (rounds count from 1), for
/// retention runs: a new directory `uploads/round{round}` with 1 % of the dataset's files
/// (text pages of 1-50 KiB, one of them a random file of 4.5 MiB at scale 1: about 1 % of
/// the dataset's bytes, all new), the directory of round `round - 5` deleted, and a line
/// appended to 0.5 % of the pages (every 200th, from an offset that moves each round).
/// Deterministic: the same rounds on the same dataset give the same tree.
pub fn change_two_percent(root: &Path, scale: f64, round: u64) -> std::io::Result<RoundStats> {
    let mut stats = RoundStats::default();
    let mut g = Gen(0x7e7e_0000_0000_0001 ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let files = ((22_000.0 * scale / 100.0).round() as usize).max(1);
    let dir = format!("{ROUNDS_DIR}/round{round}");
    let mut s = DatasetStats::default();
    for i in 0..files - 1 {
        let n = 1024 + (g.next() % (49 * 1024)) as usize;
        let data = g.text(n);
        write(root, &format!("{dir}/page{i}.html"), &data, &mut s)?;
    }
    let data = g.random((4.5 * scale * 1048576.0) as usize);
    write(root, &format!("{dir}/upload.bin"), &data, &mut s)?;
    stats.added_files = s.files;
    stats.added_bytes = s.bytes;
    if let Some(old) = round.checked_sub(ROUND_DIRECTORY_LIFETIME) {
        let p = root.join(format!("{ROUNDS_DIR}/round{old}"));
        if p.exists() {
            stats.deleted_files = std::fs::read_dir(&p)?.count() as u64;
            std::fs::remove_dir_all(&p)?;
        }
    }
    let small = (20_000.0 * scale) as usize;
    // 37 is prime to 200: 200 rounds before a page is changed twice.
    let offset = (round as usize * 37) % 200;
    for i in (offset..small).step_by(200) {
        let p = root.join(format!("site{}/dir{}/page{i}.html", i % 20, (i / 20) % 50));
        let mut data = std::fs::read(&p)?;
        data.extend_from_slice(format!("\n<!-- round {round} -->\n").as_bytes());
        std::fs::write(&p, data)?;
        stats.changed_files += 1;
    }
    Ok(stats)
}

/// The seed of [`generate_accounts`] unless the runner is given another.
pub const DEFAULT_ACCOUNTS_SEED: u64 = 0x4e16_4700_0000_0500;

/// The username (and home directory name) of account `i` of [`generate_accounts`].
pub fn account_name(i: usize) -> String {
    format!("user{i:04}")
}

/// Where each account of [`generate_accounts`] keeps its database dump.
pub const DUMP_PATH: &str = "backups/db.sql";

/// A uniform draw in [0, 1).
fn unit(g: &mut Gen) -> f64 {
    (g.next() >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` bytes of text on one line (no newline; no single quote), for SQL values.
fn line_text(g: &mut Gen, n: usize) -> Vec<u8> {
    let mut t = g.text(n);
    for b in &mut t {
        if *b == b'\n' {
            *b = b' ';
        }
    }
    t
}

/// A mail as a maildir file holds it: headers, then `n` bytes of body text about.
fn mail(g: &mut Gen, user: &str, j: usize, n: usize) -> Vec<u8> {
    let mut out = format!(
        "Return-Path: <sender{0}@example.net>\nDelivered-To: {user}@{user}.example.com\n\
         Received: from mx{1}.example.net (mx{1}.example.net [192.0.2.{1}])\n\tby host.example.com with ESMTPS id {2:016x}\n\t\
         for <{user}@{user}.example.com>; Sat, 21 Nov 2026 0{3}:{4:02}:00 +0000\n\
         From: Sender {0} <sender{0}@example.net>\nTo: {user}@{user}.example.com\n\
         Subject: order {5} invoice\nDate: Sat, 21 Nov 2026 0{3}:{4:02}:00 +0000\n\
         Message-ID: <{2:016x}@example.net>\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\n",
        j % 97,
        j % 250,
        g.next(),
        j % 10,
        j % 60,
        g.next() % 100_000
    )
    .into_bytes();
    let body = n.saturating_sub(out.len()).max(64);
    out.extend_from_slice(&g.text(body));
    out
}

/// A database dump as `mysqldump` writes it (tables, extended inserts of rows of ids,
/// dates, numbers and text), about `n` bytes.
fn sql_dump(g: &mut Gen, user: &str, n: usize) -> Vec<u8> {
    const TABLES: [(&str, &str); 5] = [
        (
            "wp_posts",
            "`ID` bigint unsigned NOT NULL AUTO_INCREMENT,\n  `post_date` datetime NOT NULL,\n  `post_author` bigint unsigned NOT NULL DEFAULT '0',\n  `post_content` longtext NOT NULL,\n  `post_status` varchar(20) NOT NULL DEFAULT 'publish'",
        ),
        (
            "wp_postmeta",
            "`meta_id` bigint unsigned NOT NULL AUTO_INCREMENT,\n  `post_id` bigint unsigned NOT NULL DEFAULT '0',\n  `meta_key` varchar(255) DEFAULT NULL,\n  `meta_value` longtext",
        ),
        (
            "wp_comments",
            "`comment_ID` bigint unsigned NOT NULL AUTO_INCREMENT,\n  `comment_date` datetime NOT NULL,\n  `comment_author` tinytext NOT NULL,\n  `comment_content` text NOT NULL,\n  `comment_approved` varchar(20) NOT NULL DEFAULT '1'",
        ),
        (
            "wp_options",
            "`option_id` bigint unsigned NOT NULL AUTO_INCREMENT,\n  `option_name` varchar(191) NOT NULL DEFAULT '',\n  `option_value` longtext NOT NULL,\n  `autoload` varchar(20) NOT NULL DEFAULT 'yes'",
        ),
        (
            "wc_orders",
            "`id` bigint unsigned NOT NULL,\n  `date_created_gmt` datetime DEFAULT NULL,\n  `customer_id` bigint unsigned DEFAULT NULL,\n  `billing_email` varchar(320) DEFAULT NULL,\n  `total_amount` decimal(26,8) DEFAULT NULL",
        ),
    ];
    let mut out = format!(
        "-- MySQL dump 10.13  Distrib 8.0.39, for Linux (x86_64)\n--\n-- Host: localhost    Database: {user}_wp\n\
         -- ------------------------------------------------------\n-- Server version\t8.0.39\n\n\
         /*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n/*!50503 SET NAMES utf8mb4 */;\n\
         /*!40103 SET TIME_ZONE='+00:00' */;\n/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n\n"
    )
    .into_bytes();
    let per_table = n / TABLES.len();
    for (t, (table, columns)) in TABLES.iter().enumerate() {
        out.extend_from_slice(
            format!(
                "--\n-- Table structure for table `{table}`\n--\n\nDROP TABLE IF EXISTS `{table}`;\n\
                 CREATE TABLE `{table}` (\n  {columns},\n  PRIMARY KEY (`{}`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;\n\n\
                 LOCK TABLES `{table}` WRITE;\n/*!40000 ALTER TABLE `{table}` DISABLE KEYS */;\n",
                columns.split('`').nth(1).unwrap_or("id")
            )
            .as_bytes(),
        );
        let end = if t + 1 == TABLES.len() {
            n
        } else {
            out.len() + per_table
        };
        let mut id = 1u64;
        while out.len() < end {
            out.extend_from_slice(format!("INSERT INTO `{table}` VALUES ").as_bytes());
            // mysqldump's extended inserts: up to about 64 KiB per statement.
            let stop = (out.len() + 65_536).min(end.max(out.len() + 1));
            let mut first = true;
            while out.len() < stop {
                if !first {
                    out.push(b',');
                }
                first = false;
                let r = g.next();
                let len = 16 + (r % 240) as usize;
                let day = 1 + id % 28;
                let row = match t {
                    0 | 2 => format!(
                        "({id},'2026-{:02}-{day:02} {:02}:{:02}:{:02}',{},'",
                        1 + id % 12,
                        r % 24,
                        (r >> 8) % 60,
                        (r >> 16) % 60,
                        1 + (r >> 24) % 20
                    ),
                    1 => format!("({id},{},'_meta_{}','", 1 + id / 7, (r >> 8) % 40),
                    3 => format!("({id},'option_{}','", (r >> 8) % 500),
                    _ => format!(
                        "({id},'2026-{:02}-{day:02} 12:00:00',{},'customer{}@example.com','",
                        1 + id % 12,
                        (r >> 8) % 5000,
                        (r >> 8) % 5000
                    ),
                };
                out.extend_from_slice(row.as_bytes());
                match t {
                    4 => out.extend_from_slice(
                        format!("{}.{:02}000000')", (r >> 20) % 900, (r >> 30) % 100).as_bytes(),
                    ),
                    _ => {
                        out.extend_from_slice(&line_text(g, len));
                        out.extend_from_slice(if t == 3 { b"','yes')" } else { b"','publish')" });
                    }
                }
                id += 1;
            }
            out.extend_from_slice(b";\n");
        }
        out.extend_from_slice(
            format!("/*!40000 ALTER TABLE `{table}` ENABLE KEYS */;\nUNLOCK TABLES;\n\n")
                .as_bytes(),
        );
    }
    out.extend_from_slice(b"-- Dump completed on 2026-11-22  3:00:01\n");
    out
}

/// Writes `accounts` home directories under `root` (`root/user0000`, ...; see
/// [`account_name`]), shaped like a hosting server's: each has 50-400 files (most accounts
/// few: 50 + 350 u^2) under `public_html/` (pages, scripts and styles of text, images of
/// random bytes), `mail/` (maildir messages), `etc/` (small configuration files) and
/// `tmp/` (sessions), most of 1-30 KiB (1 + 29 u^5 KiB) and one in 200 of 64-400 KiB, plus
/// a database dump at [`DUMP_PATH`] of 0.5-3 MiB (0.5 + 2.5 u^4 MiB) of SQL text. About
/// 2.1 MiB and 170 files per account: 500 accounts of [`DEFAULT_ACCOUNTS_SEED`] are
/// 1,069 MiB in 83,981 files.
/// Deterministic: the same `seed` gives the same trees, and writing them again over
/// themselves (after [`change_accounts`]) restores them without deleting anything.
pub fn generate_accounts(root: &Path, accounts: usize, seed: u64) -> std::io::Result<DatasetStats> {
    const WEB_DIRS: [&str; 6] = [
        "public_html",
        "public_html/wp-includes",
        "public_html/wp-content/themes/shop",
        "public_html/wp-content/plugins/cart",
        "public_html/assets/css",
        "public_html/assets/js",
    ];
    const WEB_EXT: [&str; 6] = ["php", "php", "php", "php", "css", "js"];
    let mut s = DatasetStats::default();
    for a in 0..accounts {
        let user = account_name(a);
        let mut g = Gen(mix(seed ^ a as u64) | 1);
        let u = unit(&mut g);
        let files = 50 + (350.0 * u * u) as usize;
        for j in 0..files {
            let kind = g.next() % 100;
            let size = if g.next().is_multiple_of(200) {
                (64 * 1024) + (unit(&mut g) * 336.0 * 1024.0) as usize
            } else {
                1024 + (unit(&mut g).powi(5) * 29.0 * 1024.0) as usize
            };
            let (rel, data) = match kind {
                0..50 => {
                    let d = (j / 7) % WEB_DIRS.len();
                    (
                        format!("{}/file{j}.{}", WEB_DIRS[d], WEB_EXT[d]),
                        g.text(size),
                    )
                }
                50..62 => (
                    format!(
                        "public_html/wp-content/uploads/2026/{:02}/image{j}.jpg",
                        1 + j % 12
                    ),
                    g.random(size),
                ),
                62..90 => (
                    format!(
                        "mail/{user}.example.com/{}/cur/{}.M{j}P{a}.host,S={size}:2,S",
                        ["info", "sales", "admin"][j % 3],
                        1_763_000_000 + j * 3_613
                    ),
                    mail(&mut g, &user, j, size),
                ),
                90..96 => (
                    format!("etc/{user}.example.com/conf{j}"),
                    g.text(size.min(2048)),
                ),
                _ => (format!("tmp/sess_{:016x}", g.next()), g.text(size)),
            };
            write(root, &format!("{user}/{rel}"), &data, &mut s)?;
        }
        let dump = (512.0 * 1024.0 + unit(&mut g).powi(4) * 2.5 * 1048576.0) as usize;
        let data = sql_dump(&mut g, &user, dump);
        write(root, &format!("{user}/{DUMP_PATH}"), &data, &mut s)?;
    }
    Ok(s)
}

/// SplitMix64's finalizer: a well-mixed hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The regular files under `dir`, sorted.
fn sorted_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Changes about 2 % of the files of each account of [`generate_accounts`] under `root`
/// (round `round`, from 1): a file is changed when a hash of its account, its place in the
/// account's sorted file list and the round is a multiple of 50; a changed dump gets new
/// rows appended, any other file a line. Nothing is created or deleted. Returns how many
/// files changed.
pub fn change_accounts(root: &Path, accounts: usize, round: u64) -> std::io::Result<u64> {
    let mut changed = 0;
    for a in 0..accounts {
        let user = account_name(a);
        let home = root.join(&user);
        for (k, p) in sorted_files(&home)?.into_iter().enumerate() {
            let h = mix(mix(((a as u64) << 32) | k as u64) ^ round);
            if !h.is_multiple_of(50) {
                continue;
            }
            let mut g = Gen(h | 1);
            let mut data = std::fs::read(&p)?;
            if p.ends_with(DUMP_PATH) {
                let rows = g.text(4096).len();
                data.extend_from_slice(
                    format!(
                        "INSERT INTO `wp_comments` VALUES ({round}000001,'2026-11-22 01:00:00','night {round}','{}','1');\n",
                        String::from_utf8_lossy(&line_text(&mut g, rows))
                    )
                    .as_bytes(),
                );
            } else {
                data.extend_from_slice(format!("\n<!-- changed in round {round} -->\n").as_bytes());
            }
            std::fs::write(&p, data)?;
            changed += 1;
        }
    }
    Ok(changed)
}
