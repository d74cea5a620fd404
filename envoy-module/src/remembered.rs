//! The credentials the callout form remembers: the exact bearer token or pass portcullis allowed,
//! until when, and the headers it set for it; shared by Envoy's workers, bounded.
//!
//! A lookup is on every signed-in request, so it is made cheap (BENCHMARKS.md counts it): a
//! credential is found by a keyed hash of its length and last 32 bytes (a JWT's signature, which no
//! one but its signer chooses) and then compared whole; a hit hands out the headers without copying
//! them.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

/// Which of the request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Held {
    Bearer,
    Pass,
}

/// The headers an allow set, as remembered.
pub type Headers = Arc<[(String, String)]>;

#[derive(Debug)]
pub struct Remembered {
    max: usize,
    keys: RandomState,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    by_hash: HashMap<u64, Vec<Slot>, BuildHasherDefault<Prehashed>>,
    len: usize,
}

#[derive(Debug)]
struct Slot {
    held: Held,
    credential: Box<[u8]>,
    until: u64,
    headers: Headers,
}

impl Slot {
    fn is(&self, held: Held, credential: &[u8]) -> bool {
        self.held == held && *self.credential == *credential
    }
}

/// How many trailing bytes of a credential its hash reads.
const TAIL: usize = 32;

impl Remembered {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            keys: RandomState::new(),
            slots: Mutex::default(),
        }
    }

    fn hash(&self, held: Held, credential: &[u8]) -> u64 {
        let tail = &credential[credential.len().saturating_sub(TAIL)..];
        self.keys.hash_one((held, credential.len(), tail))
    }

    /// The headers remembered for `credential`, while `now` is before the time portcullis named.
    pub fn get(&self, held: Held, credential: &[u8], now: u64) -> Option<Headers> {
        let hash = self.hash(held, credential);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = slots.by_hash.get_mut(&hash)?;
        let at = bucket.iter().position(|s| s.is(held, credential))?;
        if bucket[at].until > now {
            return Some(bucket[at].headers.clone());
        }
        bucket.swap_remove(at);
        if bucket.is_empty() {
            slots.by_hash.remove(&hash);
        }
        slots.len -= 1;
        None
    }

    /// Remembers `credential` until `until`; when full, the expired go first, then everything.
    pub fn put(
        &self,
        held: Held,
        credential: &[u8],
        until: u64,
        headers: Vec<(String, String)>,
        now: u64,
    ) {
        let hash = self.hash(held, credential);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len >= self.max {
            slots.by_hash.retain(|_, bucket| {
                bucket.retain(|s| s.until > now);
                !bucket.is_empty()
            });
            slots.len = slots.by_hash.values().map(Vec::len).sum();
            if slots.len >= self.max {
                *slots = Slots::default();
            }
        }
        let slot = Slot {
            held,
            credential: credential.into(),
            until,
            headers: headers.into(),
        };
        let bucket = slots.by_hash.entry(hash).or_default();
        match bucket.iter().position(|s| s.is(held, credential)) {
            Some(at) => bucket[at] = slot,
            None => {
                bucket.push(slot);
                slots.len += 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The map's hasher for keys that are keyed hashes already: the key as it is.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(user: &str) -> Vec<(String, String)> {
        vec![("x-user".into(), user.into())]
    }

    #[test]
    fn a_credential_is_found_whole_only_and_until_its_time() {
        let r = Remembered::new(10);
        let token = [b'a'; 100];
        r.put(Held::Bearer, &token, 60, headers("alice"), 0);
        assert_eq!(r.get(Held::Bearer, &token, 59).unwrap()[0].1, "alice");
        // Same tail and length, another start: the same hash, not the same token.
        let mut other = token;
        other[0] = b'b';
        assert!(r.get(Held::Bearer, &other, 0).is_none());
        assert!(
            r.get(Held::Pass, &token, 0).is_none(),
            "a pass is not a bearer token"
        );
        r.put(Held::Bearer, &other, 60, headers("bob"), 0);
        assert_eq!(r.get(Held::Bearer, &other, 0).unwrap()[0].1, "bob");
        assert_eq!(r.get(Held::Bearer, &token, 0).unwrap()[0].1, "alice");
        assert_eq!(r.len(), 2);
        assert!(r.get(Held::Bearer, &token, 60).is_none(), "not at its time");
        assert_eq!(r.len(), 1, "gone once past");
        assert!(r.get(Held::Bearer, b"", 0).is_none());
    }

    #[test]
    fn when_full_the_expired_go_then_everything() {
        let r = Remembered::new(2);
        r.put(Held::Pass, b"p1", 10, headers("a"), 0);
        r.put(Held::Pass, b"p2", 100, headers("b"), 0);
        r.put(Held::Pass, b"p3", 100, headers("c"), 20);
        assert_eq!(r.len(), 2);
        assert!(r.get(Held::Pass, b"p2", 20).is_some());
        r.put(Held::Pass, b"p4", 100, headers("d"), 20);
        assert_eq!(r.len(), 1, "nothing expired: all went");
        r.put(Held::Pass, b"p4", 200, headers("e"), 20);
        assert_eq!(r.len(), 1, "the same credential again replaces it");
        assert_eq!(r.get(Held::Pass, b"p4", 150).unwrap()[0].1, "e");
    }
}
