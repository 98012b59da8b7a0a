//! Deserialisation helpers for fields that some clients send as `null`.

use serde::{Deserialize, Deserializer};

/// `null` (or absent, with `#[serde(default)]`) becomes the type's default.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
