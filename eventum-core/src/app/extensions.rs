//! Typed per-connection values.

use std::any::{Any, TypeId};
use std::collections::HashMap;

/// Typed per-connection values for Rust users, at most one of each type (what the `http`
/// crate calls extensions): e.g. the authenticated user, set by handshake middleware.
///
/// ```
/// use eventum_core::app::Extensions;
///
/// struct Score(u32);
/// let mut extensions = Extensions::default();
/// extensions.insert(Score(1));
/// extensions.get_mut::<Score>().unwrap().0 += 1;
/// assert_eq!(extensions.get::<Score>().map(|s| s.0), Some(2));
/// assert!(extensions.remove::<Score>().is_some());
/// assert!(extensions.get::<Score>().is_none());
/// ```
#[derive(Default)]
pub struct Extensions {
    /// Allocated when the first value is stored: most connections never store one, and an
    /// empty map inline would cost each of them 48 bytes.
    #[allow(clippy::box_collection, reason = "one pointer inline; the map itself is 48 bytes")]
    values: Option<Box<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
}

impl Extensions {
    /// Stores a value, returning the previous value of that type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) -> Option<T> {
        let old = self
            .values
            .get_or_insert_default()
            .insert(TypeId::of::<T>(), Box::new(value))?;
        old.downcast::<T>().ok().map(|b| *b)
    }

    /// The value of type `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.values.as_ref()?.get(&TypeId::of::<T>())?.downcast_ref()
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        self.values.as_mut()?.get_mut(&TypeId::of::<T>())?.downcast_mut()
    }

    /// Moves every value of `other` in, replacing values of the same type.
    pub fn extend(&mut self, other: Extensions) {
        if let Some(values) = other.values {
            self.values.get_or_insert_default().extend(*values);
        }
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        let old = self.values.as_mut()?.remove(&TypeId::of::<T>())?;
        old.downcast::<T>().ok().map(|b| *b)
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.values.as_ref().map_or(0, |values| values.len());
        write!(f, "Extensions({count} values)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_replaced_by_type() {
        let mut extensions = Extensions::default();
        assert_eq!(extensions.insert(5u32), None);
        assert_eq!(extensions.insert(6u32), Some(5));
        extensions.insert(String::from("x"));
        assert_eq!(extensions.get::<u32>(), Some(&6));
        assert_eq!(extensions.get::<String>().map(String::as_str), Some("x"));
        assert_eq!(extensions.get::<u64>(), None);
    }
}
