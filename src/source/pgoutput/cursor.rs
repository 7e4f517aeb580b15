//! A bounds-checked big-endian reader over one message's bytes; every read names its field so
//! a malformed message says exactly where it broke.

use super::DecodeError;

/// Reads one pgoutput message front to back without copying.
pub(super) struct Cursor<'a> {
    rest: &'a [u8],
    len: usize,
    message: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor over the body of a `message` (the bytes after its tag).
    pub(super) fn new(message: &'static str, body: &'a [u8]) -> Self {
        Cursor {
            rest: body,
            len: body.len(),
            message,
        }
    }

    /// The message kind, for errors raised outside the cursor.
    pub(super) fn message(&self) -> &'static str {
        self.message
    }

    /// Bytes not read yet; bounds allocations sized by counts read from the wire.
    pub(super) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Offset of the next unread byte, counted from the tag byte that precedes the body.
    fn offset(&self) -> usize {
        self.len.saturating_sub(self.rest.len()).saturating_add(1)
    }

    fn truncated(&self, field: &'static str) -> DecodeError {
        DecodeError::Truncated {
            message: self.message,
            field,
            offset: self.offset(),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| self.truncated(field))?;
        self.rest = tail;
        Ok(*head)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.array::<1>(field).map(|[byte]| byte)
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_be_bytes)
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(super) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_be_bytes)
    }

    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_be_bytes)
    }

    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.array(field).map(i64::from_be_bytes)
    }

    /// An Int32 length (never negative on the wire) followed by that many bytes.
    pub(super) fn length_prefixed(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let start = self.offset();
        let length = self.i32(field)?;
        let n = usize::try_from(length).map_err(|_| DecodeError::NegativeLength {
            message: self.message,
            field,
            length,
        })?;
        let (value, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(DecodeError::Truncated {
                message: self.message,
                field,
                offset: start,
            })?;
        self.rest = tail;
        Ok(value)
    }

    /// A NUL-terminated UTF-8 string, without its terminator.
    pub(super) fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let end = self
            .rest
            .iter()
            .position(|&byte| byte == 0)
            .ok_or_else(|| self.truncated(field))?;
        let (text, tail) = self
            .rest
            .split_at_checked(end)
            .ok_or_else(|| self.truncated(field))?;
        let text = std::str::from_utf8(text).map_err(|_| DecodeError::InvalidUtf8 {
            message: self.message,
            field,
        })?;
        // `tail` starts with the NUL found above.
        self.rest = tail.get(1..).unwrap_or_default();
        Ok(text)
    }

    /// Fails unless the whole message was consumed.
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                message: self.message,
                count: self.rest.len(),
            })
        }
    }
}
