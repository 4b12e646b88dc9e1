//! Data-channel test messages: a sequence number and a checksum the receiver verifies.
//!
//! A message of `n` bytes is ASCII text: `SSSSSSSSSS:CCCCCCCC:` followed by `n - 20` filler
//! bytes, where `S` is the zero-padded decimal sequence number (from 0), `C` the lower-case hex
//! FNV-1a 32-bit hash of the filler, and the filler byte at index `i` is
//! `b'a' + (seq + i) % 26`. The peer page (`peer/page.js`) implements the same format.

/// Length of the header, in bytes.
pub const HEADER_LEN: usize = 20;

/// FNV-1a, 32 bits.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Builds message `seq` of `len` bytes (`len >= HEADER_LEN`).
pub fn encode(seq: u64, len: usize) -> String {
    let body: String = (0..len.saturating_sub(HEADER_LEN))
        .map(|i| char::from(b'a' + ((seq as usize + i) % 26) as u8))
        .collect();
    format!("{seq:010}:{:08x}:{body}", fnv1a32(body.as_bytes()))
}

/// What the receiver learns from one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Sequence number, if the header could be read.
    pub seq: Option<u64>,
    /// Header readable and checksum matches.
    pub intact: bool,
}

/// Checks one received message.
pub fn check(data: &[u8]) -> Checked {
    let bad = Checked {
        seq: None,
        intact: false,
    };
    if data.len() < HEADER_LEN || data[10] != b':' || data[19] != b':' {
        return bad;
    }
    let Some(seq) = std::str::from_utf8(&data[..10])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return bad;
    };
    let sum = std::str::from_utf8(&data[11..19])
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok());
    Checked {
        seq: Some(seq),
        intact: sum == Some(fnv1a32(&data[HEADER_LEN..])),
    }
}

/// Receiver-side order tracking for one channel.
#[derive(Debug, Default, Clone)]
pub struct Receiver {
    next: u64,
}

impl Receiver {
    /// Checks a message and whether it is the next in sequence; returns
    /// `(seq or -1, intact, in_order)`.
    pub fn accept(&mut self, data: &[u8]) -> (i64, bool, bool) {
        let c = check(data);
        match c.seq {
            Some(seq) => {
                let in_order = seq == self.next;
                self.next = seq + 1;
                (seq as i64, c.intact, in_order)
            }
            None => (-1, false, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vector_matches_the_page() {
        // The same vector is asserted in page.js's self-check.
        assert_eq!(encode(3, 24), "0000000003:96e2cbf1:defg");
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
    }

    #[test]
    fn order_is_tracked() {
        let mut r = Receiver::default();
        assert_eq!(r.accept(encode(0, 30).as_bytes()), (0, true, true));
        assert_eq!(r.accept(encode(2, 30).as_bytes()), (2, true, false));
        assert_eq!(r.accept(encode(3, 30).as_bytes()), (3, true, true));
        assert_eq!(r.accept(b"garbage"), (-1, false, false));
    }

    proptest! {
        #[test]
        fn round_trip(seq in 0u64..10_000_000, len in HEADER_LEN..2000usize) {
            let m = encode(seq, len);
            prop_assert_eq!(m.len(), len);
            prop_assert_eq!(check(m.as_bytes()), Checked { seq: Some(seq), intact: true });
        }

        #[test]
        fn any_single_byte_change_in_the_body_is_caught(seq in 0u64..1000, len in 21usize..500, at in 0usize..480, flip in 1u8..255) {
            let mut m = encode(seq, len).into_bytes();
            let at = HEADER_LEN + at % (len - HEADER_LEN);
            m[at] ^= flip;
            prop_assert!(!check(&m).intact);
        }
    }
}
