//! The `Embedder` port, and a deterministic feature-hashing embedder that needs no model.

use async_trait::async_trait;

/// Errors of an [`Embedder`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The service cannot be reached or is overloaded.
    #[error("embedder unavailable: {0}")]
    Unavailable(String),
    /// The input cannot be embedded (too long, empty batch…).
    #[error("invalid embedding input: {0}")]
    InvalidInput(String),
    /// Any other failure.
    #[error("embedder error: {0}")]
    Backend(String),
}

impl EmbedError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EmbedError::Unavailable(_))
    }
}

/// Turns texts into vectors of a fixed dimension.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The dimension of every vector returned.
    fn dimensions(&self) -> usize;

    /// One vector per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Feature hashing over words and word bigrams, L2-normalized: texts sharing vocabulary get
/// high cosine similarity. Deterministic, offline, and fast; a sound default for dedup and
/// local runs, not a semantic model.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dims: usize,
}

impl HashingEmbedder {
    /// An embedder producing `dims`-dimensional vectors (at least 1).
    pub fn new(dims: usize) -> Self {
        Self { dims: dims.max(1) }
    }

    /// Embeds one text synchronously.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        let words = crate::memory::terms(text);
        let mut add = |feature: &str, weight: f32| {
            let h = fnv1a(feature.as_bytes());
            let idx = (h % self.dims as u64) as usize;
            let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
            v[idx] += sign * weight;
        };
        for w in &words {
            add(w, 1.0);
        }
        for pair in words.windows(2) {
            add(&format!("{} {}", pair[0], pair[1]), 0.5);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn dimensions(&self) -> usize {
        self.dims
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::cosine;

    #[test]
    fn similar_texts_score_higher_than_unrelated_ones() {
        let e = HashingEmbedder::new(256);
        let a = e.embed_one("add a slugify function to the string utils module");
        let b = e.embed_one("add the slugify function to string utils");
        let c = e.embed_one("postgres connection pool exhausted under load");
        assert!(cosine(&a, &b) > 0.6, "{}", cosine(&a, &b));
        assert!(cosine(&a, &c) < 0.3, "{}", cosine(&a, &c));
        assert_eq!(a.len(), 256);
        assert_eq!(e.embed_one("same text"), e.embed_one("same text"));
    }
}
