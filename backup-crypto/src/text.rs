//! Helpers for keys written as text: hex, normalization and the typo checksum.
//!
//! Every key text has the shape `<tag>-v<version>:<field>:…:<checksum>`, where the checksum
//! is the first 4 bytes of BLAKE3 over everything before the last `:`, as 8 hex digits.
//! Parsing ignores all whitespace (so wrapped or indented copies work) and letter case.

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Known key-text tags (without the version), for telling the user which kind they pasted.
const KNOWN_TAGS: [(&str, &str); 2] = [
    ("bkup-master", "a master key"),
    ("bkup-owner-key", "an owner key"),
];

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Lower-case hex of `bytes`, in a string wiped on drop (for secrets). The capacity is
/// reserved up front so no partial copy is left behind by a reallocation.
pub(crate) fn encode_hex_secret(bytes: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    push_hex(&mut s, bytes);
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly `N` bytes of hex; the error says what is wrong without echoing the text.
pub(crate) fn decode_hex<const N: usize>(s: &str) -> Result<Zeroizing<[u8; N]>, String> {
    let raw = s.as_bytes();
    if raw.len() != 2 * N {
        return Err(format!(
            "has {} characters, expected {} hex digits",
            s.chars().count(),
            2 * N
        ));
    }
    let mut out = Zeroizing::new([0u8; N]);
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => out[i] = (hi << 4) | lo,
            _ => {
                let at = if nibble(pair[0]).is_none() {
                    2 * i
                } else {
                    2 * i + 1
                };
                return Err(format!(
                    "character {} is not a hex digit (0-9, a-f)",
                    at + 1
                ));
            }
        }
    }
    Ok(out)
}

/// The typo checksum of a key text's body: 8 hex digits.
pub(crate) fn checksum(body: &str) -> String {
    encode_hex(&blake3::hash(body.as_bytes()).as_bytes()[..4])
}

/// Removes all whitespace and lower-cases the text, in a string wiped on drop.
fn normalize(text: &str) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(text.len()));
    s.extend(text.chars().filter(|c| !c.is_whitespace()));
    s.make_ascii_lowercase();
    s
}

/// A key text split into its fields, checksum verified. Wiped on drop.
pub(crate) struct KeyText {
    normalized: Zeroizing<String>,
}

impl KeyText {
    /// Parses `text` as `<tag>-v1:<fields>:<checksum>` with exactly `fields` fields.
    /// `what` names the key in errors (`master key`).
    pub(crate) fn parse(what: &'static str, tag: &str, fields: usize, text: &str) -> Result<Self> {
        let normalized = normalize(text);
        let bad = |reason: String| Error::malformed(what, reason);
        if normalized.is_empty() {
            return Err(bad("the text is empty".into()));
        }
        let head = normalized.split(':').next().unwrap_or_default();
        match head
            .strip_prefix(tag)
            .and_then(|rest| rest.strip_prefix("-v"))
        {
            Some("1") => {}
            Some(version) if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(bad(format!(
                    "format version {version} is not supported (this build reads version 1)"
                )));
            }
            _ => {
                let other = KNOWN_TAGS
                    .iter()
                    .find(|(t, _)| *t != tag && head.starts_with(t))
                    .map(|(_, name)| *name);
                return Err(bad(match other {
                    Some(name) => format!("this is {name}, but {what} text was expected"),
                    None => format!("does not start with `{tag}-v1:`"),
                }));
            }
        }
        let parts = normalized.split(':').count();
        if parts != fields + 2 {
            return Err(bad(format!(
                "expected {} `:`-separated parts ({tag}-v1, {} field(s), checksum), found {parts}",
                fields + 2,
                fields
            )));
        }
        Ok(Self { normalized })
    }

    /// The `i`-th field after the tag (0-based).
    pub(crate) fn field(&self, i: usize) -> &str {
        self.normalized.split(':').nth(i + 1).unwrap_or_default()
    }

    /// Checks the trailing checksum; call after the fields were validated, so a length or
    /// digit error is reported precisely first.
    pub(crate) fn verify_checksum(&self, what: &'static str) -> Result<()> {
        let (body, sum) = self.normalized.rsplit_once(':').unwrap_or_default();
        if sum.len() != 8 || sum.bytes().any(|b| nibble(b).is_none()) {
            return Err(Error::malformed(
                what,
                "the checksum (last part) must be 8 hex digits",
            ));
        }
        if checksum(body) != sum {
            return Err(Error::malformed(
                what,
                "checksum does not match: the text was mistyped or damaged",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff, 0xab];
        let s = encode_hex(&bytes);
        assert_eq!(s, "00017f80ffab");
        assert_eq!(*encode_hex_secret(&bytes), s);
        assert_eq!(*decode_hex::<6>(&s).unwrap(), bytes);
        assert_eq!(*decode_hex::<6>("00017F80FFAB").unwrap(), bytes);
        assert!(decode_hex::<6>("00017f80ffa").is_err());
        let e = decode_hex::<6>("00017f80ffxb").unwrap_err();
        assert!(e.contains("character 11"), "{e}");
    }

    #[test]
    fn key_text_checks_tag_parts_and_checksum() {
        let body = "bkup-test-v1:abcd";
        let good = format!("{body}:{}", checksum(body));
        let t = KeyText::parse("test key", "bkup-test", 1, &good).unwrap();
        assert_eq!(t.field(0), "abcd");
        t.verify_checksum("test key").unwrap();

        let spaced = format!(
            "  BKUP-test-v1:ab\n cd:{} \n",
            checksum(body).to_uppercase()
        );
        KeyText::parse("test key", "bkup-test", 1, &spaced)
            .unwrap()
            .verify_checksum("test key")
            .unwrap();

        let typo = format!("bkup-test-v1:abce:{}", checksum(body));
        let e = KeyText::parse("test key", "bkup-test", 1, &typo)
            .unwrap()
            .verify_checksum("test key")
            .unwrap_err();
        assert!(e.to_string().contains("mistyped"), "{e}");

        let e = KeyText::parse("test key", "bkup-test", 1, "bkup-test-v2:ab:00000000")
            .err()
            .unwrap();
        assert!(e.to_string().contains("version 2"), "{e}");
        let e = KeyText::parse("test key", "bkup-test", 1, "bkup-owner-key-v1:a:b:c")
            .err()
            .unwrap();
        assert!(e.to_string().contains("owner key"), "{e}");
        let e = KeyText::parse("test key", "bkup-test", 1, "bkup-test-v1:a:b:c")
            .err()
            .unwrap();
        assert!(e.to_string().contains("found 4"), "{e}");
        assert!(KeyText::parse("test key", "bkup-test", 1, " \n").is_err());
    }
}
