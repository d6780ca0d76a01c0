//! The API key: what a valid key looks like, how a new one is made, and how
//! a submitted key is compared with it.
//!
//! The rules are SPEC §4: a leading UTF-8 byte-order mark and surrounding
//! whitespace are dropped (so `echo "$KEY" | tee` and Windows editors both
//! work); what remains must be 1 to 512 bytes of visible ASCII.

pub mod check;
pub mod commands;
pub mod file;

use std::fmt;

use zeroize::Zeroizing;

/// The longest key accepted, in bytes (all of them visible ASCII).
pub const MAX_KEY_LEN: usize = 512;

/// The shortest custom key `krill key set` accepts without `--force`.
pub const MIN_STRONG_LEN: usize = 32;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The server's API key.
///
/// The secret is wiped from memory when dropped and never printed by
/// `Debug`. Comparisons go through [`ApiKey::matches`], which hashes the
/// candidate and compares digests in constant time, so neither the position
/// of the first wrong byte nor the candidate's length shows in the timing.
pub struct ApiKey {
    secret: Zeroizing<String>,
    digest: [u8; 32],
}

impl ApiKey {
    /// Makes a new random key: a version-4 UUID drawn from the operating
    /// system's CSPRNG, lower-case and hyphenated.
    pub fn generate() -> ApiKey {
        let text = uuid::Uuid::new_v4().hyphenated().to_string();
        ApiKey::from_valid(text)
    }

    /// Parses key material as read from a file or standard input.
    pub fn parse(raw: &[u8]) -> Result<ApiKey, KeyFormatError> {
        let trimmed = trim(raw);
        if trimmed.is_empty() {
            return Err(KeyFormatError::Empty);
        }
        if trimmed.len() > MAX_KEY_LEN {
            return Err(KeyFormatError::TooLong { len: trimmed.len() });
        }
        if let Some(index) = trimmed.iter().position(|b| !is_visible_ascii(*b)) {
            return Err(KeyFormatError::NotVisibleAscii {
                position: index + 1,
            });
        }
        // Every byte is ASCII, so this conversion cannot fail; map the error
        // anyway rather than unwrap.
        let text = std::str::from_utf8(trimmed)
            .map_err(|_| KeyFormatError::NotVisibleAscii { position: 1 })?;
        Ok(ApiKey::from_valid(text.to_owned()))
    }

    fn from_valid(text: String) -> ApiKey {
        let digest = sha256(text.as_bytes());
        ApiKey {
            secret: Zeroizing::new(text),
            digest,
        }
    }

    /// True when `candidate` is exactly this key.
    ///
    /// Both sides are reduced to SHA-256 digests first, then compared with
    /// `subtle::ConstantTimeEq`: the time taken depends on neither where the
    /// candidate differs nor how long it is (beyond hashing its bytes).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let digest = sha256(candidate);
        bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &self.digest[..]))
    }

    /// The key's text. Only the commands whose job is to show the key call
    /// this.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// The bytes of a key file holding this key: the key and one newline.
    pub fn file_contents(&self) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(self.secret.len() + 1));
        bytes.extend_from_slice(self.secret.as_bytes());
        bytes.push(b'\n');
        bytes
    }

    /// What makes this key weak by the rule `krill key set` applies to
    /// custom keys: at least [`MIN_STRONG_LEN`] characters, with letters,
    /// digits and other characters all present. Empty for a strong key.
    /// The descriptions never include the key.
    pub fn weaknesses(&self) -> Vec<String> {
        let text = self.secret.as_bytes();
        let mut found = Vec::new();
        if text.len() < MIN_STRONG_LEN {
            found.push(format!(
                "it has {} characters, fewer than {MIN_STRONG_LEN}",
                text.len()
            ));
        }
        let lacks = |test: fn(&u8) -> bool, what: &str, found: &mut Vec<String>| {
            if !text.iter().any(test) {
                found.push(format!("it has no {what}"));
            }
        };
        lacks(u8::is_ascii_alphabetic, "letters", &mut found);
        lacks(u8::is_ascii_digit, "digits", &mut found);
        lacks(
            |b| !b.is_ascii_alphanumeric(),
            "other characters (such as - _ . ! @ #)",
            &mut found,
        );
        found
    }

    /// Number of characters in the key.
    pub fn len(&self) -> usize {
        self.secret.len()
    }

    /// Always false: a parsed key has at least one character.
    pub fn is_empty(&self) -> bool {
        self.secret.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why key material was refused. The messages describe the rule broken and
/// never repeat the material itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFormatError {
    /// Nothing is left once the byte-order mark and whitespace are dropped.
    Empty,
    /// More than [`MAX_KEY_LEN`] characters.
    TooLong { len: usize },
    /// A byte outside 0x21..=0x7E (space, control character, non-ASCII),
    /// at this 1-based position of the trimmed key.
    NotVisibleAscii { position: usize },
}

impl fmt::Display for KeyFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFormatError::Empty => f.write_str("is empty (a key needs 1 to 512 characters)"),
            KeyFormatError::TooLong { len } => write!(
                f,
                "is {len} characters long, over the limit of {MAX_KEY_LEN}"
            ),
            KeyFormatError::NotVisibleAscii { position } => write!(
                f,
                "has a character at position {position} that is not visible ASCII \
                 (keys may hold only the characters 0x21 to 0x7E: no spaces, control \
                 characters or non-ASCII text)"
            ),
        }
    }
}

impl std::error::Error for KeyFormatError {}

fn trim(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_prefix(UTF8_BOM).unwrap_or(raw);
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = raw.iter().position(|b| !is_space(b)).unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &raw[start..end]
}

fn is_visible_ascii(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_lowercase_uuid_v4_with_newline() {
        let key = ApiKey::generate();
        let contents = key.file_contents();
        assert_eq!(contents.len(), 37);
        assert_eq!(contents[36], b'\n');
        let parsed = uuid::Uuid::parse_str(key.expose()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(key.expose(), key.expose().to_lowercase());
    }

    #[test]
    fn what_shell_tools_add_is_dropped() {
        for raw in [
            &b"abc-123\n"[..],
            b"abc-123\r\n",
            b"\xEF\xBB\xBFabc-123\n",
            b"  \tabc-123 \t\n\n",
        ] {
            let key = ApiKey::parse(raw).unwrap();
            assert_eq!(key.expose(), "abc-123");
        }
    }

    #[test]
    fn inner_space_control_and_non_ascii_are_refused() {
        assert_eq!(
            ApiKey::parse(b"abc def").unwrap_err(),
            KeyFormatError::NotVisibleAscii { position: 4 }
        );
        assert!(ApiKey::parse(b"abc\x07def").is_err());
        assert!(ApiKey::parse("clé".as_bytes()).is_err());
        assert!(ApiKey::parse(b"\x7f").is_err());
    }

    #[test]
    fn length_limits() {
        assert_eq!(ApiKey::parse(b" \n").unwrap_err(), KeyFormatError::Empty);
        assert_eq!(
            ApiKey::parse(b"\xEF\xBB\xBF").unwrap_err(),
            KeyFormatError::Empty
        );
        assert!(ApiKey::parse(&[b'a'; 512]).is_ok());
        assert_eq!(
            ApiKey::parse(&[b'a'; 513]).unwrap_err(),
            KeyFormatError::TooLong { len: 513 }
        );
    }

    #[test]
    fn matches_only_the_exact_key() {
        let key = ApiKey::parse(b"s3cret-key").unwrap();
        assert!(key.matches(b"s3cret-key"));
        assert!(!key.matches(b"s3cret-kez"));
        assert!(!key.matches(b"s3cret-key "));
        assert!(!key.matches(b"S3cret-key"));
        assert!(!key.matches(b""));
    }

    #[test]
    fn weak_keys_are_named_by_what_they_lack() {
        assert!(ApiKey::generate().weaknesses().is_empty());
        let strong = ApiKey::parse(b"correct-horse-battery-staple-2024!").unwrap();
        assert!(strong.weaknesses().is_empty());
        assert_eq!(ApiKey::parse(b"short-1").unwrap().weaknesses().len(), 1);
        let letters_only = ApiKey::parse(&[b'a'; 40]).unwrap();
        assert_eq!(letters_only.weaknesses().len(), 2);
        let no_other = ApiKey::parse(b"abcdefghij0123456789abcdefghij0123").unwrap();
        assert_eq!(no_other.weaknesses().len(), 1);
        for text in no_other.weaknesses() {
            assert!(!text.contains("abcdef"));
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = ApiKey::parse(b"do-not-print-me").unwrap();
        assert!(!format!("{key:?}").contains("do-not"));
    }

    #[test]
    fn errors_never_echo_the_material() {
        let err = ApiKey::parse(b"visible secret").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
