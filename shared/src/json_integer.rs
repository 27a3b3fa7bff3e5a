//! Integers as JSON Schema reads them: `7` and `7.0` are the same integer (JSON Schema draft 6
//! and later, which OpenAPI 3.1 uses), so a field the API documents as an integer accepts a
//! whole number written either way — serde alone refuses `7.0` for a `u64`. Fractions,
//! negatives and values beyond the field's type are still refused, naming the value.

use serde::Deserializer;
use serde::de::{Error, Unexpected, Visitor};

/// `#[serde(deserialize_with = "whole_number")]` for an unsigned integer field.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let value = deserializer.deserialize_any(WholeNumber)?;
    T::try_from(value).map_err(|_| {
        D::Error::invalid_value(
            Unexpected::Unsigned(value),
            &format!("at most {}", std::any::type_name::<T>()).as_str(),
        )
    })
}

struct WholeNumber;

impl Visitor<'_> for WholeNumber {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a whole non-negative number")
    }

    fn visit_u64<E: Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }

    fn visit_i64<E: Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value).map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
    }

    fn visit_f64<E: Error>(self, value: f64) -> Result<u64, E> {
        // 2^64 is the first whole f64 beyond u64.
        if value.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&value) {
            Ok(value as u64)
        } else {
            Err(E::invalid_value(Unexpected::Float(value), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Field {
        #[serde(deserialize_with = "super::whole_number")]
        n: u32,
    }

    fn read(json: &str) -> Result<u32, String> {
        serde_json::from_str::<Field>(&format!(r#"{{"n": {json}}}"#))
            .map(|f| f.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_read_either_way_and_everything_else_is_refused() {
        assert_eq!(read("7"), Ok(7));
        assert_eq!(read("7.0"), Ok(7));
        assert_eq!(read("0.0"), Ok(0));
        assert_eq!(read("-0.0"), Ok(0));
        assert_eq!(read("4294967295"), Ok(u32::MAX));
        assert_eq!(read("4294967295.0"), Ok(u32::MAX));
        assert!(read("7.5").unwrap_err().contains("floating point `7.5`"));
        assert!(read("-1").unwrap_err().contains("integer `-1`"));
        assert!(read("4294967296").unwrap_err().contains("at most u32"));
        assert!(read("1e300").is_err());
        assert!(
            read("\"7\"")
                .unwrap_err()
                .contains("whole non-negative number")
        );
    }
}
