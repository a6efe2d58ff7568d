//! A `BTreeMap` that remembers which keys changed since the last `take_dirty`, so that the state
//! machine persists only what a batch of log entries touched (apply cost O(changes)).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedMap<K: Ord + Clone, V> {
    map: BTreeMap<K, V>,
    dirty: BTreeSet<K>,
}

impl<K: Ord + Clone, V> Default for TrackedMap<K, V> {
    fn default() -> Self {
        TrackedMap {
            map: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone, V> TrackedMap<K, V> {
    /// A map loaded from storage: nothing is dirty.
    pub fn from_clean(map: BTreeMap<K, V>) -> Self {
        TrackedMap {
            map,
            dirty: BTreeSet::new(),
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let v = self.map.get_mut(k)?;
        self.dirty.insert(k.clone());
        Some(v)
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.dirty.insert(k.clone());
        self.map.insert(k, v)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let old = self.map.remove(k);
        if old.is_some() {
            self.dirty.insert(k.clone());
        }
        old
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Keys changed since the last call, with their current value (`None` = deleted).
    pub fn take_dirty(&mut self) -> Vec<(K, Option<&V>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|k| {
                let v = self.map.get(&k);
                (k, v)
            })
            .collect()
    }

    /// Forget pending changes (after the whole map was persisted, e.g. snapshot install).
    pub fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    pub fn as_map(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<K: Ord + Clone + Serialize, V: Serialize> Serialize for TrackedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de, K: Ord + Clone + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de>
    for TrackedMap<K, V>
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TrackedMap::from_clean(BTreeMap::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_keys_are_reported_once() {
        let mut m: TrackedMap<u64, &str> = TrackedMap::default();
        m.insert(1, "a");
        m.insert(2, "b");
        m.remove(&1);
        let d: Vec<_> = m
            .take_dirty()
            .into_iter()
            .map(|(k, v)| (k, v.copied()))
            .collect();
        assert_eq!(d, vec![(1, None), (2, Some("b"))]);
        assert!(m.take_dirty().is_empty());
        m.get_mut(&2);
        assert_eq!(m.take_dirty().len(), 1);
        // Removing an absent key changes nothing.
        m.remove(&7);
        assert!(m.take_dirty().is_empty());
    }
}
