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
