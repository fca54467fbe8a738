//! What every store accepts: the one validation of task text and JSON that every adapter runs
//! before writing, so a value one adapter accepts is a value every adapter can read back.
//!
//! Refused up front (as [`StoreError::InvalidInput`](crate::StoreError::InvalidInput), naming
//! the field):
//! - a NUL character in any text field or anywhere in a JSON value (keys included): Postgres'
//!   `text` and `jsonb` cannot hold it, so it is refused everywhere instead of being accepted by
//!   some adapters only;
//! - JSON nested deeper than [`MAX_JSON_DEPTH`]: decoders (`serde_json`'s recursion limit is
//!   128) could never read such a value back, so the row would be stuck;
//! - payloads over [`MAX_TASK_PAYLOAD_BYTES`], titles over
//!   [`MAX_TITLE_BYTES`], descriptions over [`MAX_DESCRIPTION_BYTES`], and short labels
//!   (capabilities, keys, file globs, criteria) over [`MAX_LABEL_BYTES`] or more than
//!   [`MAX_LIST_ITEMS`] of them.
//!
//! The checks walk values iteratively: a hostile value cannot exhaust the stack here.

use serde_json::Value;

use crate::task::MAX_TASK_PAYLOAD_BYTES;

/// Deepest accepted JSON nesting (an array or object inside another counts one level).
pub const MAX_JSON_DEPTH: usize = 64;
/// Longest accepted task title, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;
/// Longest accepted task description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 256 * 1024;
/// Longest accepted label (capability, key, file glob, acceptance criterion, local id), in bytes.
pub const MAX_LABEL_BYTES: usize = 4096;
/// Most items accepted in a list of labels.
pub const MAX_LIST_ITEMS: usize = 1000;
/// Longest accepted failure message, in bytes (longer ones are cut by the worker, not refused).
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Refuses a NUL character or more than `max` bytes in `field`.
pub fn text(field: &str, s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("{field} is {} bytes, over the {max}-byte limit", s.len()));
    }
    if let Some(at) = s.find('\0') {
        return Err(format!("{field} contains a NUL character at byte {at}"));
    }
    Ok(())
}

/// Refuses more than [`MAX_LIST_ITEMS`] labels or a bad label in `field`.
pub fn labels<'a>(field: &str, items: impl IntoIterator<Item = &'a String>) -> Result<(), String> {
    for (i, s) in items.into_iter().enumerate() {
        if i >= MAX_LIST_ITEMS {
            return Err(format!("{field} has more than {MAX_LIST_ITEMS} items"));
        }
        text(&format!("{field}[{i}]"), s, MAX_LABEL_BYTES)?;
    }
    Ok(())
}

/// Refuses a JSON value nested deeper than [`MAX_JSON_DEPTH`] or holding a NUL character in a
/// string or key.
pub fn json_shape(field: &str, value: &Value) -> Result<(), String> {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => {
                return Err(format!("{field} contains a NUL character in a string ({:?}…)", prefix(s)));
            }
            Value::Array(items) => {
                if depth >= MAX_JSON_DEPTH {
                    return Err(format!("{field} nests deeper than {MAX_JSON_DEPTH} levels"));
                }
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Object(map) => {
                if depth >= MAX_JSON_DEPTH {
                    return Err(format!("{field} nests deeper than {MAX_JSON_DEPTH} levels"));
                }
                for (k, item) in map {
                    if k.contains('\0') {
                        return Err(format!("{field} contains a NUL character in a key ({:?}…)", prefix(k)));
                    }
                    stack.push((item, depth + 1));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first few characters of `s`, for messages.
fn prefix(s: &str) -> String {
    s.chars().take(16).collect()
}

/// [`json_shape`], then refuses a value over [`MAX_TASK_PAYLOAD_BYTES`] serialized.
pub fn payload(field: &str, value: &Value) -> Result<(), String> {
    json_shape(field, value)?;
    let size = serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_TASK_PAYLOAD_BYTES {
        return Err(format!("{field} is {size} bytes, over the {MAX_TASK_PAYLOAD_BYTES}-byte limit"));
    }
    Ok(())
}

/// A failure message as the store accepts it: NUL characters spelled `\0` and the text cut to
/// [`MAX_ERROR_BYTES`] (on a character boundary). The worker passes executor errors through
/// this, so a message with odd bytes still fails the attempt instead of being refused.
pub fn clean_error(message: &str) -> String {
    let mut s = if message.contains('\0') { message.replace('\0', "\\0") } else { message.to_owned() };
    if s.len() > MAX_ERROR_BYTES {
        let mut cut = MAX_ERROR_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted_and_one_more_is_refused() {
        assert!(json_shape("input", &nested(MAX_JSON_DEPTH)).is_ok());
        let err = json_shape("input", &nested(MAX_JSON_DEPTH + 1)).unwrap_err();
        assert!(err.contains("input nests deeper than 64"), "{err}");
    }

    #[test]
    fn deep_values_are_walked_without_recursion() {
        let deep = nested(100_000);
        let err = json_shape("result", &deep).unwrap_err();
        assert!(err.starts_with("result nests deeper"), "{err}");
        // Dropping 100,000 nested arrays (recursively) would overflow the stack; leak it instead.
        std::mem::forget(deep);
    }

    #[test]
    fn nul_characters_are_refused_with_their_place() {
        let err = json_shape("input", &json!({"a": ["ok", "b\u{0}d"]})).unwrap_err();
        assert_eq!(err, "input contains a NUL character in a string (\"b\\0d\"…)");
        let err = json_shape("input", &json!({"k\u{0}": 1})).unwrap_err();
        assert!(err.contains("in a key"), "{err}");
        assert_eq!(text("title", "a\0b", 10).unwrap_err(), "title contains a NUL character at byte 1");
        assert!(text("title", "abcdef", 3).unwrap_err().contains("over the 3-byte limit"));
    }

    #[test]
    fn clean_error_spells_nul_and_cuts_on_a_character_boundary() {
        assert_eq!(clean_error("a\0b"), "a\\0b");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = clean_error(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.len() > MAX_ERROR_BYTES - 2);
        assert!(text("error", &cut, MAX_ERROR_BYTES).is_ok());
    }
}
