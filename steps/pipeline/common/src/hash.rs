//! Canonical JSON and SHA-256 hashes of rows and tables.
//!
//! A row's hash is the SHA-256 (lower-case hex) of its canonical JSON:
//! object keys sorted by their UTF-8 bytes at every level, no whitespace,
//! numbers and strings as `serde_json` writes them. The keys are sorted
//! here explicitly, so the hash does not depend on whether `serde_json`'s
//! `preserve_order` feature is on. A table's digest is the SHA-256 of its
//! row hashes joined with `"\n"` (rows in the table's sorted order).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical JSON text of `value` (see the module docs).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// The canonical JSON text of any serializable value.
///
/// # Errors
///
/// serde_json's message when `value` does not serialize (a map with
/// non-string keys, say).
pub fn canonical_json_of<T: Serialize + ?Sized>(value: &T) -> Result<String, String> {
    serde_json::to_value(value).map(|v| canonical_json(&v)).map_err(|e| e.to_string())
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// The hash of one row: the SHA-256 of its canonical JSON.
pub fn row_hash(row: &Value) -> String {
    sha256_hex(canonical_json(row).as_bytes())
}

/// The digest of a table: the SHA-256 of its row hashes joined with `"\n"`
/// (the SHA-256 of the empty string for no rows).
pub fn digest(row_hashes: &[String]) -> String {
    sha256_hex(row_hashes.join("\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": 1, "x": null}], "m": "é\"q"}, "A": 2.5});
        assert_eq!(canonical_json(&v), r#"{"A":2.5,"a":{"m":"é\"q","z":[3,{"x":null,"y":1}]},"b":1}"#);
        #[derive(Serialize)]
        struct Row {
            zeta: u32,
            alpha: &'static str,
        }
        assert_eq!(canonical_json_of(&Row { zeta: 1, alpha: "x" }).unwrap(), r#"{"alpha":"x","zeta":1}"#);
    }

    #[test]
    fn numbers_keep_one_spelling() {
        // Money rebuilt from cents prints as the shortest round-trip decimal.
        assert_eq!(canonical_json(&json!(crate::money::from_cents(1234))), "12.34");
        assert_eq!(canonical_json(&json!(crate::money::from_cents(30))), "0.3");
        assert_eq!(canonical_json(&json!(0.1 + 0.2)), "0.30000000000000004");
        assert_eq!(canonical_json(&json!(7u64)), "7");
    }

    #[test]
    fn known_hashes() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(digest(&[]), sha256_hex(b""));
        let hashes = vec![row_hash(&json!({"a": 1})), row_hash(&json!({"a": 2}))];
        assert_eq!(digest(&hashes), sha256_hex(format!("{}\n{}", hashes[0], hashes[1]).as_bytes()));
        // A row's hash does not depend on how its keys were ordered.
        assert_eq!(row_hash(&json!({"a": 1, "b": 2})), row_hash(&serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap()));
        assert_eq!(row_hash(&json!({"a": 1})), sha256_hex(br#"{"a":1}"#));
    }
}
