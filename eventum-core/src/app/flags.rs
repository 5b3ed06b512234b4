//! Per-connection key–value flags (JSON values).

use std::collections::HashMap;

use serde_json::Value;

/// A connection's flags: a key–value store of JSON values, e.g. the user id stored by an
/// auth middleware. The operations mirror eventum-asgi's `add_flag`, `add_flags`,
/// `get_flag`, `get_all_flags`, `remove_flag`, `remove_flags` and `clear_flags`.
///
/// ```
/// use eventum_core::app::Flags;
/// use serde_json::json;
///
/// let mut flags = Flags::default();
/// flags.add("user", "ada");
/// flags.add_many([("role", json!("admin")), ("visits", json!(3))]);
/// assert_eq!(flags.get("user"), Some(&json!("ada")));
/// let copy = flags.all(); // a copy: changing it leaves the flags alone
/// flags.remove("visits");
/// assert!(copy.contains_key("visits"));
/// assert_eq!(flags.len(), 2);
/// flags.remove_many(["user", "role"]);
/// assert!(flags.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// Allocated when the first flag is set: most connections never set one, and an empty
    /// map inline would cost each of them 48 bytes.
    #[allow(clippy::box_collection, reason = "one pointer inline; the map itself is 48 bytes")]
    values: Option<Box<HashMap<String, Value>>>,
}

impl Flags {
    /// Sets one flag, replacing an earlier value.
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.values.get_or_insert_default().insert(key.into(), value.into());
    }

    /// Sets several flags.
    pub fn add_many<K: Into<String>, V: Into<Value>>(&mut self, pairs: impl IntoIterator<Item = (K, V)>) {
        for (key, value) in pairs {
            self.add(key, value);
        }
    }

    /// One flag's value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.as_ref()?.get(key)
    }

    /// One flag as a string, if it is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// A copy of every flag; later changes to either side do not show in the other.
    pub fn all(&self) -> HashMap<String, Value> {
        self.values.as_deref().cloned().unwrap_or_default()
    }

    /// Iterates over the flags without copying them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values
            .iter()
            .flat_map(|values| values.iter())
            .map(|(k, v)| (k.as_str(), v))
    }

    /// Removes one flag, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.values.as_mut()?.remove(key)
    }

    /// Removes several flags.
    pub fn remove_many<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>) {
        for key in keys {
            self.remove(key);
        }
    }

    /// Removes every flag.
    pub fn clear(&mut self) {
        self.values = None;
    }

    /// Number of flags.
    pub fn len(&self) -> usize {
        self.values.as_ref().map_or(0, |values| values.len())
    }

    /// Whether there are no flags.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The same flags, however they came to be stored (none set, or all removed again).
impl PartialEq for Flags {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(key, value)| other.get(key) == Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_flags_are_equal_however_they_came_to_be_stored() {
        let mut emptied = Flags::default();
        emptied.add("a", 1);
        emptied.remove("a");
        assert_eq!(emptied, Flags::default());
        assert!(emptied.is_empty() && emptied.iter().next().is_none());
        let mut one = Flags::default();
        one.add("b", 2);
        assert_ne!(emptied, one);
        emptied.add("b", 2);
        assert_eq!(emptied, one);
        emptied.add("b", 3);
        assert_ne!(emptied, one);
    }

    #[test]
    fn all_returns_a_copy_that_does_not_alias() {
        let mut flags = Flags::default();
        flags.add("a", 1);
        let mut copy = flags.all();
        copy.insert("b".into(), json!(2));
        flags.add("a", 10);
        assert_eq!(copy.get("a"), Some(&json!(1)));
        assert_eq!(flags.get("b"), None);
    }

    #[test]
    fn flag_operations() {
        let mut flags = Flags::default();
        flags.add("session", "s-1");
        flags.add("session", "s-2");
        assert_eq!(flags.get_str("session"), Some("s-2"));
        flags.add_many([("x", 1), ("y", 2)]);
        assert_eq!(flags.len(), 3);
        assert_eq!(flags.remove("x"), Some(json!(1)));
        assert_eq!(flags.remove("x"), None);
        flags.remove_many(["y", "missing"]);
        assert_eq!(flags.iter().count(), 1);
        flags.clear();
        assert!(flags.is_empty());
    }
}
