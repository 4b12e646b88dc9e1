//! Shards across machines: which scenarios (or matrix cells) one of N CI machines runs.
//!
//! `--partition hash:K/N` and `--partition slice:K/N`, with cargo-nextest's meaning:
//! - `hash:K/N`: an item goes to shard `xxh3_64(key) mod N + 1`, where the key is the scenario
//!   file's path as found from the command line's paths (`scenarios/apps/x.toml`), or a matrix
//!   cell's `offerer->answerer`. Adding or removing a scenario moves no other one: shards
//!   stay stable as the suite grows.
//! - `slice:K/N`: the items in order (files sorted by path; cells row by row) are dealt out
//!   round-robin, item i (from 0) to shard `i mod N + 1`: shard sizes differ by at most one,
//!   but adding an item shifts those after it.
//!
//! K and N count from 1; every item lands in exactly one of the N shards.

use std::str::FromStr;

/// How items are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// By a hash of each item's key.
    Hash,
    /// Round-robin over the ordered items.
    Slice,
}

/// One shard of N: `--partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// How.
    pub method: Method,
    /// This shard, 1-based.
    pub shard: u64,
    /// How many shards.
    pub total: u64,
}

impl FromStr for Partition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected hash:K/N or slice:K/N, 1 <= K <= N (e.g. hash:1/3)";
        let (method, rest) = s.split_once(':').ok_or_else(|| format!("{s:?}: {usage}"))?;
        let method = match method {
            "hash" => Method::Hash,
            "slice" => Method::Slice,
            other => return Err(format!("unknown partition method {other:?}: {usage}")),
        };
        let (k, n) = rest
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: {usage}"))?;
        let num = |x: &str| {
            x.parse::<u64>()
                .map_err(|e| format!("{s:?}: {x:?} is not a count ({e}); {usage}"))
        };
        let (shard, total) = (num(k)?, num(n)?);
        if total == 0 || shard == 0 || shard > total {
            return Err(format!(
                "{s:?}: shard {shard} of {total} is out of range; {usage}"
            ));
        }
        Ok(Partition {
            method,
            shard,
            total,
        })
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = match self.method {
            Method::Hash => "hash",
            Method::Slice => "slice",
        };
        write!(f, "{m}:{}/{}", self.shard, self.total)
    }
}

impl Partition {
    /// The 1-based shard of the item at `index` (0-based, in order) with `key`.
    pub fn shard_of(&self, index: usize, key: &str) -> u64 {
        match self.method {
            Method::Hash => xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % self.total + 1,
            Method::Slice => index as u64 % self.total + 1,
        }
    }

    /// The items of this shard, in their order.
    pub fn select<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(i, t)| self.shard_of(*i, &key(t)) == self.shard)
            .map(|(_, t)| t)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_rejects_with_the_usage() {
        assert_eq!(
            "hash:2/3".parse::<Partition>(),
            Ok(Partition {
                method: Method::Hash,
                shard: 2,
                total: 3
            })
        );
        assert_eq!(
            "slice:1/1".parse::<Partition>().unwrap().to_string(),
            "slice:1/1"
        );
        for bad in [
            "hash:0/3",
            "hash:4/3",
            "hash:1/0",
            "count:1/2",
            "hash:1",
            "hash:a/2",
            "1/2",
        ] {
            let e = bad.parse::<Partition>().unwrap_err();
            assert!(e.contains("hash:K/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn slices_deal_round_robin() {
        let items: Vec<u32> = (0..7).collect();
        let p = |k| Partition {
            method: Method::Slice,
            shard: k,
            total: 3,
        };
        assert_eq!(p(1).select(items.clone(), |i| i.to_string()), vec![0, 3, 6]);
        assert_eq!(p(3).select(items, |i| i.to_string()), vec![2, 5]);
    }

    proptest! {
        /// Every item lands in exactly one shard, whatever the method and count.
        #[test]
        fn shards_cover_every_item_once(keys in prop::collection::btree_set("[a-z/]{1,12}", 0..40), total in 1u64..6, hash in any::<bool>()) {
            let items: Vec<String> = keys.into_iter().collect();
            let method = if hash { Method::Hash } else { Method::Slice };
            let mut seen: Vec<String> = Vec::new();
            for shard in 1..=total {
                seen.extend(Partition { method, shard, total }.select(items.clone(), |s| s.clone()));
            }
            seen.sort();
            prop_assert_eq!(seen, items);
        }

        /// With hash, adding an item moves no other.
        #[test]
        fn hash_shards_are_stable_when_items_are_added(keys in prop::collection::btree_set("[a-z/]{1,12}", 1..30), extra in "[A-Z]{1,8}", total in 1u64..6) {
            let p = Partition { method: Method::Hash, shard: 1, total };
            let before: Vec<String> = keys.iter().cloned().collect();
            let mut after = before.clone();
            after.insert(0, extra.clone());
            let a = p.select(before, |s| s.clone());
            let mut b = p.select(after, |s| s.clone());
            b.retain(|s| *s != extra);
            prop_assert_eq!(a, b);
        }
    }
}
