//! The stored form of a tower-sessions record in its sessiond session's data bag, the
//! marker a loaded record carries back to `save`, and the merge rule of concurrent saves.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// The data-bag key holding a tower-sessions record inside its sessiond session.
pub(crate) const DATA_KEY: &str = "tower_sessions.record";

/// The reserved key a loaded record carries in its data: the revision and the data as
/// read, so `save` can tell which keys this request changed. Removed before anything is
/// stored; an application must not write it.
pub const BASE_KEY: &str = "__sessiond_base";

/// The record's data, as tower-sessions keeps it.
pub(crate) type Data = HashMap<String, Value>;

/// What the data bag holds under [`DATA_KEY`]: the data, the tower-sessions expiry and a
/// revision that grows by one with every save.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub rev: u64,
    /// The record's `expiry_date`, in ms since the Unix epoch.
    pub expiry_ms: i64,
    pub data: Data,
}

impl Envelope {
    /// The envelope of a stored value; a session without one (its create was cut short
    /// between the session row and the data write) reads as empty at revision 0.
    pub fn read(raw: Option<&Value>) -> Result<Envelope, Error> {
        match raw {
            None => Ok(Envelope {
                expiry_ms: i64::MAX,
                ..Envelope::default()
            }),
            Some(v) => Envelope::deserialize(v).map_err(|e| Error::Corrupt(e.to_string())),
        }
    }

    pub fn to_value(&self) -> Result<Value, Error> {
        serde_json::to_value(self).map_err(|e| Error::Corrupt(e.to_string()))
    }
}

/// What a loaded record carries under [`BASE_KEY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Base {
    pub rev: u64,
    pub data: Data,
}

impl Base {
    /// Takes the marker out of a record's data. A record without one was not loaded
    /// in this request (new) or was cleared (`Session::clear`): it replaces what is
    /// stored. A marker that does not parse was written by the application over the
    /// reserved key and counts as absent.
    pub fn take(data: &mut Data) -> Option<Base> {
        data.remove(BASE_KEY)
            .and_then(|v| Base::deserialize(v).ok())
    }

    pub fn to_value(&self) -> Result<Value, Error> {
        serde_json::to_value(self).map_err(|e| Error::Corrupt(e.to_string()))
    }
}

/// The data a save writes when the stored revision is no longer the one it read: the
/// stored data with this request's own changes on top. A key this request changed (set,
/// replaced or removed, compared with what it read) takes this request's value; every
/// other key keeps the stored one, so a concurrent save's keys are never dropped. When
/// both changed one key, the later save wins that key.
pub(crate) fn merge(base: &Data, mine: &Data, stored: &Data) -> Data {
    let mut out = stored.clone();
    for k in base.keys().chain(mine.keys()) {
        match (base.get(k), mine.get(k)) {
            (b, m) if b == m => {}
            (_, Some(v)) => {
                out.insert(k.clone(), v.clone());
            }
            (Some(_), None) => {
                out.remove(k);
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Data {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn merge_keeps_concurrent_keys_and_applies_own_changes() {
        let base = data(json!({"a": 1, "b": 2, "gone": true}));
        let mine = data(json!({"a": 10, "b": 2, "mine": "x"}));
        let stored = data(json!({"a": 1, "b": 3, "gone": true, "theirs": "y"}));
        assert_eq!(
            merge(&base, &mine, &stored),
            data(json!({"a": 10, "b": 3, "mine": "x", "theirs": "y"}))
        );
    }

    #[test]
    fn merge_gives_a_key_both_changed_to_the_later_save() {
        let base = data(json!({"n": 1}));
        let mine = data(json!({"n": 2}));
        let stored = data(json!({"n": 5}));
        assert_eq!(merge(&base, &mine, &stored), data(json!({"n": 2})));
    }

    #[test]
    fn the_marker_is_taken_out_and_a_foreign_one_ignored() {
        let mut d = data(json!({"k": 1, BASE_KEY: {"rev": 4, "data": {"k": 0}}}));
        let b = Base::take(&mut d).unwrap();
        assert_eq!(b.rev, 4);
        assert_eq!(d, data(json!({"k": 1})));
        let mut d = data(json!({"k": 1, BASE_KEY: "app wrote this"}));
        assert!(Base::take(&mut d).is_none());
        assert!(!d.contains_key(BASE_KEY));
    }

    #[test]
    fn a_missing_envelope_reads_empty_and_a_bad_one_is_corrupt() {
        let e = Envelope::read(None).unwrap();
        assert_eq!((e.rev, e.data.len()), (0, 0));
        assert!(matches!(
            Envelope::read(Some(&json!({"rev": "x"}))),
            Err(Error::Corrupt(_))
        ));
    }
}
