//! Output capped at a limit: bytes past it are counted as truncation and dropped.

/// One output stream, kept up to `limit` bytes.
#[derive(Debug, Default)]
pub(crate) struct CappedBuffer {
    limit: usize,
    bytes: Vec<u8>,
    truncated: bool,
}

impl CappedBuffer {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, bytes: Vec::new(), truncated: false }
    }

    /// Keeps what fits; flags the rest.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// The kept bytes and whether anything was dropped.
    pub(crate) fn into_parts(self) -> (Vec<u8>, bool) {
        (self.bytes, self.truncated)
    }

    /// Takes the content, leaving an empty buffer with the same limit.
    #[cfg(feature = "local")]
    pub(crate) fn take(&mut self) -> (Vec<u8>, bool) {
        std::mem::replace(self, Self::new(self.limit)).into_parts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_limit_and_flags_the_rest() {
        let mut b = CappedBuffer::new(5);
        b.push(b"abc");
        b.push(b"");
        assert_eq!(b.bytes, b"abc");
        b.push(b"de");
        assert!(!b.truncated, "exactly at the limit is not truncated");
        b.push(b"f");
        b.push(b"ghi");
        assert_eq!(b.into_parts(), (b"abcde".to_vec(), true));

        let mut z = CappedBuffer::new(0);
        z.push(b"x");
        assert_eq!(z.into_parts(), (vec![], true));
    }
}
