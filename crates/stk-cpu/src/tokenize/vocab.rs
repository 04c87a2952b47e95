//! Byte-string -> id maps for the fast tokenizers: a hash map with a small multiplicative
//! hasher (vocabulary keys are short, trusted strings from the model file, so a fast
//! non-cryptographic hash is the right trade-off).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Word-at-a-time multiply-rotate hash (the FxHash scheme).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 8 {
            let (head, rest) = bytes.split_at(8);
            let mut b = [0u8; 8];
            b.copy_from_slice(head);
            self.add(u64::from_le_bytes(b));
            bytes = rest;
        }
        if bytes.len() >= 4 {
            let (head, rest) = bytes.split_at(4);
            let mut b = [0u8; 4];
            b.copy_from_slice(head);
            self.add(u64::from(u32::from_le_bytes(b)));
            bytes = rest;
        }
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Map from a token's UTF-8 bytes to its id, remembering the longest key so that lookups
/// of longer strings can be skipped.
#[derive(Debug, Default)]
pub(crate) struct BytesMap {
    map: HashMap<Box<[u8]>, u32, BuildHasherDefault<FastHasher>>,
    max_len: usize,
}

impl BytesMap {
    pub(crate) fn insert(&mut self, key: &[u8], id: u32) {
        self.max_len = self.max_len.max(key.len());
        self.map.insert(key.into(), id);
    }

    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<u32> {
        self.map.get(key).copied()
    }

    /// Length in bytes of the longest key.
    #[inline]
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }
}
