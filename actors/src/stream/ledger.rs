//! The user's subscriptions, kept by the stream so that every new socket gets them again:
//! [`Ledger`]. Bounded: at most a set number of topics.

use std::collections::BTreeSet;

/// The topics the user is subscribed to, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    topics: BTreeSet<String>,
    max: usize,
}

/// The ledger is full.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the stream holds {max} subscriptions already; unsubscribe from one first")]
pub struct LedgerFull {
    /// The limit.
    pub max: usize,
}

impl Ledger {
    /// An empty ledger holding at most `max` topics.
    pub fn new(max: usize) -> Ledger {
        Ledger { topics: BTreeSet::new(), max }
    }

    /// Adds a topic; `Ok(false)` if it was there already.
    pub fn add(&mut self, topic: &str) -> Result<bool, LedgerFull> {
        if self.topics.contains(topic) {
            return Ok(false);
        }
        if self.topics.len() >= self.max {
            return Err(LedgerFull { max: self.max });
        }
        Ok(self.topics.insert(topic.to_owned()))
    }

    /// Removes a topic; whether it was there.
    pub fn remove(&mut self, topic: &str) -> bool {
        self.topics.remove(topic)
    }

    /// The topics.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(String::as_str)
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// What changed since `before`: (topics added, topics removed).
    pub fn changes_since(&self, before: &Ledger) -> (Vec<String>, Vec<String>) {
        let added = self.topics.difference(&before.topics).cloned().collect();
        let removed = before.topics.difference(&self.topics).cloned().collect();
        (added, removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_is_bounded_and_diffs() {
        let mut ledger = Ledger::new(2);
        assert_eq!(ledger.add("a"), Ok(true));
        assert_eq!(ledger.add("a"), Ok(false));
        let before = ledger.clone();
        assert_eq!(ledger.add("b"), Ok(true));
        assert_eq!(ledger.add("c"), Err(LedgerFull { max: 2 }));
        assert!(ledger.remove("a"));
        assert_eq!(ledger.changes_since(&before), (vec!["b".to_owned()], vec!["a".to_owned()]));
        assert_eq!(ledger.topics().collect::<Vec<_>>(), ["b"]);
    }
}
