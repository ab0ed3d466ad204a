//! The one key codec: parts joined with [`SEP`], integers big-endian and fixed-width, so that
//! byte order is key order. Strings never contain `0xFF` (it is not valid UTF-8), so a string
//! part ends at the next separator; an integer part is always eight bytes.

use crate::error::{Error, Result};

/// The separator between key parts.
pub const SEP: u8 = 0xFF;

/// Builds a key part by part.
#[derive(Debug, Default, Clone)]
pub struct KeyBuf(Vec<u8>, bool);

impl KeyBuf {
    /// An empty key.
    pub fn new() -> Self {
        Self(Vec::with_capacity(64), false)
    }

    /// Appends a string part (with a separator before it, unless it is the first part).
    pub fn str(mut self, s: &str) -> Self {
        self.sep();
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// Appends a `u64` part, big-endian.
    pub fn u64(mut self, n: u64) -> Self {
        self.sep();
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// Ends the key with a separator: the prefix of every key that continues it.
    pub fn prefix(mut self) -> Vec<u8> {
        self.0.push(SEP);
        self.0
    }

    /// The finished key.
    pub fn build(self) -> Vec<u8> {
        self.0
    }

    /// A separator before every part but the first (which may be an empty string).
    fn sep(&mut self) {
        if self.1 {
            self.0.push(SEP);
        }
        self.1 = true;
    }
}

/// Reads a key part by part, in the order it was built.
#[derive(Debug)]
pub struct KeyReader<'a> {
    rest: &'a [u8],
    first: bool,
}

impl<'a> KeyReader<'a> {
    /// Starts reading `key`.
    pub fn new(key: &'a [u8]) -> Self {
        Self { rest: key, first: true }
    }

    fn skip_sep(&mut self) -> Result<()> {
        if self.first {
            self.first = false;
            return Ok(());
        }
        match self.rest.split_first() {
            Some((&SEP, rest)) => {
                self.rest = rest;
                Ok(())
            }
            _ => Err(corrupt("expected a separator")),
        }
    }

    /// Reads a string part.
    pub fn str(&mut self) -> Result<&'a str> {
        self.skip_sep()?;
        let end = self.rest.iter().position(|&b| b == SEP).unwrap_or(self.rest.len());
        let (part, rest) = self.rest.split_at(end);
        self.rest = rest;
        std::str::from_utf8(part).map_err(|_| corrupt("string part is not UTF-8"))
    }

    /// Reads a `u64` part.
    pub fn u64(&mut self) -> Result<u64> {
        self.skip_sep()?;
        let (part, rest) = self.rest.split_at_checked(8).ok_or_else(|| corrupt("short u64"))?;
        self.rest = rest;
        Ok(u64::from_be_bytes(part.try_into().map_err(|_| corrupt("short u64"))?))
    }

    /// Reads the rest of the key as one raw part (a digest after a string).
    pub fn rest(&mut self) -> Result<&'a [u8]> {
        self.skip_sep()?;
        Ok(std::mem::take(&mut self.rest))
    }

    /// Whether the whole key has been read.
    pub fn is_done(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Decodes a value that is a single big-endian `u64`.
pub fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| corrupt("value is not a u64"))?;
    Ok(u64::from_be_bytes(arr))
}

fn corrupt(what: &str) -> Error {
    Error::Store(format!("corrupt key or value: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_layout_is_pinned() {
        assert_eq!(KeyBuf::new().str("ab").build(), b"ab");
        assert_eq!(
            KeyBuf::new().str("!r").u64(258).build(),
            [b'!', b'r', 0xFF, 0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(KeyBuf::new().u64(1).str("x").build(), [0, 0, 0, 0, 0, 0, 0, 1, 0xFF, b'x']);
        assert_eq!(KeyBuf::new().str("a").prefix(), [b'a', 0xFF]);
    }

    #[test]
    fn integers_sort_numerically() {
        let a = KeyBuf::new().u64(255).build();
        let b = KeyBuf::new().u64(256).build();
        assert!(a < b);
    }

    #[test]
    fn round_trip_even_when_integer_bytes_contain_the_separator() {
        let key = KeyBuf::new().str("room").u64(u64::MAX).str("tail").build();
        let mut r = KeyReader::new(&key);
        assert_eq!(r.str().expect("str"), "room");
        assert_eq!(r.u64().expect("u64"), u64::MAX);
        assert_eq!(r.str().expect("str"), "tail");
        assert!(r.is_done());
    }

    /// Found by the `key_codec` fuzz target (input `TT`: parts "", "", 0, ""): an empty
    /// first part left out the separator after it, so the key read back differently.
    #[test]
    fn an_empty_first_part_keeps_its_separator() {
        let key = KeyBuf::new().str("").str("").u64(0).str("").build();
        assert_eq!(key, [0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF]);
        let mut r = KeyReader::new(&key);
        assert_eq!(r.str().expect("str"), "");
        assert_eq!(r.str().expect("str"), "");
        assert_eq!(r.u64().expect("u64"), 0);
        assert_eq!(r.str().expect("str"), "");
        assert!(r.is_done());
        let prefix = KeyBuf::new().str("").prefix();
        assert!(KeyBuf::new().str("").str("x").build().starts_with(&prefix));
    }

    #[test]
    fn corrupt_keys_are_errors_not_panics() {
        assert!(KeyReader::new(&[1, 2]).u64().is_err());
        assert!(decode_u64(&[1]).is_err());
        let mut r = KeyReader::new(b"a\x00");
        assert_eq!(r.str().expect("str"), "a\u{0}");
        assert!(r.u64().is_err());
    }
}
