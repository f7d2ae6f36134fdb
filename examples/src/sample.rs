//! A generated hosting account for demos and tests, in the `FsAccount` layout.

use std::path::{Path, PathBuf};

/// What [`generate_sample_account`] wrote.
#[derive(Debug, Clone)]
pub struct SampleAccount {
    /// The account root (`home/`, `databases/`, ...).
    pub root: PathBuf,
    /// Regular files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Deterministic filler (xorshift); sample data only, not for anything secret.
struct Filler(u64);

impl Filler {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&str; 16] = [
            "the", "account", "backup", "server", "hosting", "panel", "restore", "snapshot",
            "mail", "domain", "database", "index", "page", "user", "cache", "theme",
        ];
        let mut out = Vec::with_capacity(n + 16);
        while out.len() < n {
            let r = self.next();
            out.extend_from_slice(WORDS[(r % 16) as usize].as_bytes());
            out.push(if r.is_multiple_of(13) { b'\n' } else { b' ' });
        }
        out.truncate(n);
        out
    }

    fn binary(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

fn write(root: &Path, rel: &str, data: &[u8], stats: &mut SampleAccount) -> std::io::Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data)?;
    stats.files += 1;
    stats.bytes += data.len() as u64;
    Ok(())
}

/// Writes a hosting account under `root`: about `home_files` files in `home/` (pages, images,
/// a nested site, a symlink, an empty directory), two database dumps, a cron table, a DNS
/// zone, a certificate and a mailbox.
pub fn generate_sample_account(root: &Path, home_files: usize) -> std::io::Result<SampleAccount> {
    let mut s = SampleAccount {
        root: root.to_path_buf(),
        files: 0,
        bytes: 0,
    };
    let mut f = Filler(0x5eed_1234_abcd_0001);
    for i in 0..home_files {
        let site = i % 7;
        let dir = i % 23;
        let (rel, data) = match i % 10 {
            0 => (
                format!("home/public_html/site{site}/img/{dir}/photo{i}.jpg"),
                {
                    let n = 2_000 + (f.next() % 60_000) as usize;
                    f.binary(n)
                },
            ),
            1 => (
                format!("home/public_html/site{site}/uploads/{dir}/doc{i}.pdf"),
                {
                    let n = 5_000 + (f.next() % 30_000) as usize;
                    f.binary(n)
                },
            ),
            _ => (
                format!("home/public_html/site{site}/pages/{dir}/page{i}.html"),
                {
                    let n = 500 + (f.next() % 20_000) as usize;
                    f.text(n)
                },
            ),
        };
        write(root, &rel, &data, &mut s)?;
    }
    write(
        root,
        "home/public_html/video/intro.mp4",
        &f.binary(3 << 20),
        &mut s,
    )?;
    write(root, "home/logs/access.log", &f.text(2 << 20), &mut s)?;
    write(
        root,
        "home/.bashrc",
        b"export PATH=$HOME/bin:$PATH\n",
        &mut s,
    )?;
    std::fs::create_dir_all(root.join("home/tmp/empty"))?;
    let link = root.join("home/www");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("public_html", link)?;
    }
    write(root, "databases/shop.sql", &f.text(4 << 20), &mut s)?;
    write(root, "databases/blog.sql", &f.text(1 << 20), &mut s)?;
    write(
        root,
        "dbusers/grants.sql",
        b"GRANT ALL PRIVILEGES ON shop.* TO 'shop'@'localhost';\n",
        &mut s,
    )?;
    write(
        root,
        "cron/crontab",
        b"*/5 * * * * php ~/public_html/site0/cron.php\n",
        &mut s,
    )?;
    write(
        root,
        "dns/example.com.db",
        b"$ORIGIN example.com.\n$TTL 3600\n@ IN SOA ns1 admin 1 3600 600 86400 3600\n@ IN A 192.0.2.10\nwww IN CNAME @\n",
        &mut s,
    )?;
    write(
        root,
        "ssl/example.com.crt",
        b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUSample\n-----END CERTIFICATE-----\n",
        &mut s,
    )?;
    for i in 0..40 {
        let n = 1_000 + (f.next() % 8_000) as usize;
        let data = f.text(n);
        write(
            root,
            &format!("mail/example.com/info/cur/17000000{i:02}.M{i}.mx:2,S"),
            &data,
            &mut s,
        )?;
    }
    write(
        root,
        "ftp/accounts",
        b"info_ftp:/home/info/public_html\n",
        &mut s,
    )?;
    write(
        root,
        "panel/account.json",
        b"{\"plan\":\"business\",\"shell\":false}\n",
        &mut s,
    )?;
    Ok(s)
}

/// Changes `n` home files and one database dump (an edit, an append, a new file).
pub fn change_some_files(root: &Path, n: usize) -> std::io::Result<u64> {
    let mut changed = 0;
    let mut stack = vec![root.join("home/public_html")];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else if e.file_type()?.is_file() {
                files.push(e.path());
            }
        }
    }
    files.sort();
    let step = (files.len() / n.max(1)).max(1);
    for path in files.iter().step_by(step).take(n) {
        let mut data = std::fs::read(path)?;
        data.extend_from_slice(b"\n<!-- edited -->\n");
        std::fs::write(path, data)?;
        changed += 1;
    }
    std::fs::write(
        root.join("home/public_html/new-page.html"),
        b"<h1>new</h1>\n",
    )?;
    let dump = root.join("databases/shop.sql");
    let mut data = std::fs::read(&dump)?;
    data.extend_from_slice(b"\nINSERT INTO orders VALUES (1001, 'new order');\n");
    std::fs::write(dump, data)?;
    Ok(changed + 2)
}
