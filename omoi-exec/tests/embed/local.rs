//! `LocalEmbedder` on all-MiniLM-L6-v2, installed by `scripts/services` (the directory is
//! `OMOI_TEST_EMBED_MODEL_DIR`; without it the tests skip, and fail under `CI=true`).

use std::sync::Arc;

use omoi_core::memory::cosine;
use omoi_core::ports::memory_store::check_dimensions;
use omoi_core::testkit::service_url;
use omoi_core::{Embedder, MemoryKind, MemoryStore, NewMemory, StoreError};
use omoi_exec::embed::{LocalEmbedder, LocalModelError};
use omoi_store::InMemoryStore;

fn model() -> Option<LocalEmbedder> {
    let dir = service_url("OMOI_TEST_EMBED_MODEL_DIR")?;
    Some(LocalEmbedder::load(&dir).expect("the model installed by scripts/services loads"))
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

#[tokio::test]
async fn a_paraphrase_is_closer_than_an_unrelated_sentence() {
    let Some(e) = model() else { return };
    assert_eq!(e.dimensions(), 384);
    let v = e
        .embed(&strings(&[
            "The database connection pool is exhausted under heavy load.",
            "Under high traffic we run out of pooled DB connections.",
            "She baked a chocolate cake for her grandmother's birthday.",
            "How do I fix a failing unit test?",
            "The test suite fails; how can I repair it?",
        ]))
        .await
        .unwrap();
    assert!(v.iter().all(|x| x.len() == 384));
    for x in &v {
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "vectors are L2-normalized: {norm}");
    }
    let (para, unrelated) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
    assert!(para > 0.5, "paraphrase similarity {para}");
    assert!(unrelated < 0.2, "unrelated similarity {unrelated}");
    assert!(cosine(&v[3], &v[4]) > cosine(&v[3], &v[0]) + 0.2);
    // Deterministic, and batching does not change a vector.
    assert_eq!(e.embed(&strings(&["How do I fix a failing unit test?"])).await.unwrap()[0], v[3]);
}

#[tokio::test]
async fn the_store_refuses_a_model_of_another_dimension() {
    let Some(e) = model() else { return };
    let store = Arc::new(InMemoryStore::new());
    store.put_memory(NewMemory::new(MemoryKind::Learning, "three dims", vec![1.0, 0.0, 0.0])).await.unwrap();
    assert!(matches!(
        check_dimensions(store.as_ref(), &e).await,
        Err(StoreError::DimensionMismatch { expected: 3, got: 384 })
    ));
    let fits = Arc::new(InMemoryStore::new().with_dimensions(384));
    check_dimensions(fits.as_ref(), &e).await.unwrap();
    let v = e.embed(&strings(&["pool exhausted"])).await.unwrap().remove(0);
    fits.put_memory(NewMemory::new(MemoryKind::ErrorFix, "pool exhausted", v)).await.unwrap();
}

#[test]
fn a_missing_or_broken_model_directory_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        matches!(LocalEmbedder::load(dir.path()), Err(LocalModelError::Io { path, .. }) if path.ends_with("config.json"))
    );
    std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
    assert!(matches!(LocalEmbedder::load(dir.path()), Err(LocalModelError::Format(_))));
    let config = r#"{"model_type":"bert","hidden_size":4,"num_hidden_layers":1,"num_attention_heads":2,
        "intermediate_size":8,"max_position_embeddings":16,"type_vocab_size":2,"vocab_size":5}"#;
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    std::fs::write(dir.path().join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n").unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"\x02\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    assert!(matches!(LocalEmbedder::load(dir.path()), Err(LocalModelError::MissingTensor(_))));
    std::fs::write(dir.path().join("config.json"), config.replace("\"bert\"", "\"roberta\"")).unwrap();
    assert!(matches!(LocalEmbedder::load(dir.path()), Err(LocalModelError::UnsupportedModel(_))));
}

#[tokio::test]
async fn scores_match_the_reference_implementation() {
    let Some(e) = model() else { return };
    // sentence-transformers' own documentation scores this pair 0.8939 with all-MiniLM-L6-v2.
    let v = e.embed(&strings(&["The new movie is awesome", "The new movie is so great"])).await.unwrap();
    let score = cosine(&v[0], &v[1]);
    assert!((score - 0.8939).abs() < 5e-4, "{score}");
}
