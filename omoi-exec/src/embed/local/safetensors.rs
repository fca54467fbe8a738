//! Reading `model.safetensors`: an 8-byte little-endian header length, a JSON header naming
//! each tensor's dtype, shape and byte range, then the raw data. Only `F32` tensors are read.

use std::collections::HashMap;

use serde::Deserialize;

use super::LocalModelError;

#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// The tensors of one file, by name.
#[derive(Debug)]
pub(crate) struct Tensors {
    bytes: Vec<u8>,
    data_start: usize,
    entries: HashMap<String, Entry>,
}

/// A loaded tensor's row-major values (its shape was checked on loading).
#[derive(Debug, Clone)]
pub(crate) struct Tensor {
    pub(crate) data: Vec<f32>,
}

impl Tensors {
    /// Parses the header of a whole file's `bytes`.
    pub(crate) fn parse(bytes: Vec<u8>) -> Result<Self, LocalModelError> {
        let bad = |m: &str| LocalModelError::Format(format!("model.safetensors: {m}"));
        let len_bytes: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("file too short"))?;
        let header_len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| bad("header too long"))?;
        let data_start =
            8usize.checked_add(header_len).filter(|e| *e <= bytes.len()).ok_or_else(|| bad("truncated header"))?;
        let mut raw: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..data_start]).map_err(|e| bad(&format!("invalid header: {e}")))?;
        raw.remove("__metadata__");
        let mut entries = HashMap::new();
        for (name, value) in raw {
            let entry: Entry = serde_json::from_value(value).map_err(|e| bad(&format!("tensor {name}: {e}")))?;
            let [start, end] = entry.data_offsets;
            if start > end || data_start + end > bytes.len() {
                return Err(bad(&format!("tensor {name} lies outside the file")));
            }
            entries.insert(name, entry);
        }
        Ok(Self { bytes, data_start, entries })
    }

    /// The `F32` tensor `name`, which must have `shape`.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, LocalModelError> {
        let entry = self.entries.get(name).ok_or_else(|| LocalModelError::MissingTensor(name.to_owned()))?;
        if entry.dtype != "F32" {
            return Err(LocalModelError::Format(format!("tensor {name} is {}, only F32 is supported", entry.dtype)));
        }
        if entry.shape != shape {
            return Err(LocalModelError::ShapeMismatch {
                tensor: name.to_owned(),
                expected: shape.to_vec(),
                got: entry.shape.clone(),
            });
        }
        let [start, end] = entry.data_offsets;
        let count: usize = shape.iter().product();
        if end - start != count * 4 {
            return Err(LocalModelError::Format(format!("tensor {name} has {} bytes for {count} values", end - start)));
        }
        let raw = &self.bytes[self.data_start + start..self.data_start + end];
        let data = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Tensor { data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[f32]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        for v in data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn tensors_are_read_by_name_and_checked_by_shape() {
        let header = r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
        let t = Tensors::parse(file(header, &[1.0, 2.0, 3.0, -4.5])).unwrap();
        assert_eq!(t.get("w", &[2, 2]).unwrap().data, vec![1.0, 2.0, 3.0, -4.5]);
        assert!(matches!(t.get("w", &[4]), Err(LocalModelError::ShapeMismatch { .. })));
        assert!(matches!(t.get("b", &[2]), Err(LocalModelError::MissingTensor(n)) if n == "b"));
    }

    #[test]
    fn truncated_files_and_other_dtypes_are_format_errors() {
        let header = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        assert!(matches!(Tensors::parse(file(header, &[1.0])), Err(LocalModelError::Format(_))));
        assert!(matches!(Tensors::parse(vec![1, 2, 3]), Err(LocalModelError::Format(_))));
        let half = r#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
        let t = Tensors::parse(file(half, &[0.0])).unwrap();
        assert!(matches!(t.get("w", &[2]), Err(LocalModelError::Format(_))));
    }
}
