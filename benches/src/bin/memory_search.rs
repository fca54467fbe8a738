//! `memory_search`: hybrid memory search at scale.
//!
//! ```text
//! cargo run --release -p omoi-benches --bin memory_search -- \
//!     --backend postgres|sqlite|memory [--memories N] [--dims D] [--queries Q] [--url URL] \
//!     [--keep SCHEMA]
//! ```
//!
//! Stores N synthetic memories (default 100,000) of D dimensions (default 384) through the
//! store's `put_memory` (8 writers at once; timed separately as `load_s`), then runs Q queries
//! (default 200) one after another, mode by mode (a warm-up pass over every query, then the
//! measured pass), and prints one JSON line:
//!
//! `{"backend","memories","dims","queries","load_s","hybrid_p50_ms","hybrid_p99_ms","vector_p50_ms","vector_p99_ms","recall_at_10"}`
//!
//! - Embeddings are clustered like real sentence embeddings: 1,000 random unit centres, each
//!   memory a centre plus Gaussian noise (σ 0.6/√D per coordinate), normalized. Texts are 8–16
//!   words drawn with Zipf's 1/rank frequencies from ranks 100 to 5,000 of a vocabulary (the
//!   top 100 of real text are stop words, which keyword search drops). Queries are a memory's
//!   vector plus the same noise, with 3 of its words. Everything comes from a fixed seed.
//! - `hybrid_*`: `search_memories` in hybrid mode, limit 10 (so 20 candidates per list).
//! - `vector_*` and `recall_at_10`: vector mode, limit 10, against the exact top 10 by cosine
//!   computed in the harness over all N vectors: recall@10 is the mean fraction of the exact top
//!   10 the store returned (1.0 by construction for the exact-scan adapters).
//! - Postgres only, the baseline in the same run: `rank_all_keyword_*` is the keyword query the
//!   store ran before its candidates were bounded (every memory holding any term ranked by
//!   `ts_rank`, top 20), timed on its own with raw SQL; `keyword_*` is the store's keyword mode
//!   with the same limit (20, a hybrid search's candidates), and `keyword_overlap` the mean
//!   fraction of the baseline's top 20 it returned.
//!
//! Postgres uses a fresh schema (HNSW `vector_cosine_ops`, pgvector defaults m = 16,
//! ef_construction = 64), dropped afterwards — or, with `--keep SCHEMA`, that schema, kept: a
//! second run with the same sizes finds the memories there (their ids are derived from the
//! seed) and measures the queries without loading again (`load_s` is then `null`). SQLite uses
//! a temporary file.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use omoi_core::memory::cosine;
use omoi_core::{MemoryId, MemoryKind, MemoryQuery, MemoryStore, NewMemory, SearchMode, StoreError};
use omoi_store::InMemoryStore;
use serde_json::json;

const USAGE: &str = "usage: memory_search --backend memory|sqlite|postgres [--memories N] [--dims D] [--queries Q] \
                     [--url URL] [--keep SCHEMA]";

#[derive(Debug)]
struct Args {
    backend: String,
    memories: usize,
    dims: usize,
    queries: usize,
    url: Option<String>,
    keep: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args { backend: String::new(), memories: 100_000, dims: 384, queries: 200, url: None, keep: None };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || match value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{flag}: {value:?} is not a positive number")),
        };
        match flag.as_str() {
            "--backend" => a.backend = value.clone(),
            "--memories" => a.memories = number()?,
            "--dims" => a.dims = number()?,
            "--queries" => a.queries = number()?,
            "--url" => a.url = Some(value.clone()),
            "--keep" => a.keep = Some(value.clone()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !matches!(a.backend.as_str(), "memory" | "sqlite" | "postgres") {
        return Err("--backend must be memory, sqlite or postgres".into());
    }
    Ok(a)
}

/// SplitMix64: a small, fast, seeded generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A standard normal sample (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// A word index with Zipf's 1/rank frequencies over ranks 100..vocab: the 100 most
    /// frequent words of real text are stop words, which keyword search drops anyway.
    fn word(&mut self, vocab: usize) -> usize {
        // Inverse CDF of p(k) ∝ 1/k on [100, vocab): k = 100 · (vocab/100)^u.
        ((100.0 * (vocab as f64 / 100.0).powf(self.unit())) as usize).min(vocab - 1)
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// The synthetic corpus and queries.
struct Corpus {
    memories: Vec<(String, Vec<f32>)>,
    queries: Vec<(String, Vec<f32>)>,
}

fn corpus(a: &Args) -> Corpus {
    let mut rng = Rng(0x5eed);
    let noise = 0.6 / (a.dims as f64).sqrt();
    let centres: Vec<Vec<f32>> = (0..1000)
        .map(|_| {
            let mut v: Vec<f32> = (0..a.dims).map(|_| rng.normal() as f32).collect();
            normalize(&mut v);
            v
        })
        .collect();
    let jitter = |rng: &mut Rng, base: &[f32]| {
        let mut v: Vec<f32> = base.iter().map(|x| x + (rng.normal() * noise) as f32).collect();
        normalize(&mut v);
        v
    };
    let memories: Vec<(String, Vec<f32>)> = (0..a.memories)
        .map(|_| {
            let words = 8 + rng.below(9);
            let text = (0..words).map(|_| format!("w{}", rng.word(5000))).collect::<Vec<_>>().join(" ");
            let centre = rng.below(centres.len());
            (text, jitter(&mut rng, &centres[centre]))
        })
        .collect();
    let queries = (0..a.queries)
        .map(|_| {
            let (text, v) = &memories[rng.below(memories.len())];
            let words: Vec<&str> = text.split(' ').collect();
            let q = (0..3).map(|_| words[rng.below(words.len())]).collect::<Vec<_>>().join(" ");
            (q, jitter(&mut rng, v))
        })
        .collect();
    Corpus { memories, queries }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The id of memory `i` of the corpus (derived from the seed, so a kept store is found again).
fn memory_id(i: usize) -> MemoryId {
    MemoryId::from_uuid(uuid::Uuid::from_u128(0x5eed_0000_0000_7000_8000_0000_0000_0000 + i as u128))
}

/// Whether `store` already holds the corpus (its first and last memory).
async fn holds(store: &dyn MemoryStore, c: &Corpus) -> bool {
    let last = c.memories.len() - 1;
    store.get_memory(memory_id(0)).await.is_ok_and(|m| m.text == c.memories[0].0)
        && store.get_memory(memory_id(last)).await.is_ok_and(|m| m.text == c.memories[last].0)
}

async fn load(store: Arc<dyn MemoryStore>, c: &Corpus) -> Result<(Vec<MemoryId>, f64), StoreError> {
    let start = Instant::now();
    let chunks: Vec<Vec<(usize, NewMemory)>> = {
        let mut chunks: Vec<Vec<(usize, NewMemory)>> = (0..8).map(|_| Vec::new()).collect();
        for (i, (text, v)) in c.memories.iter().enumerate() {
            let kind = MemoryKind::ALL[i % MemoryKind::ALL.len()];
            let mut m = NewMemory::new(kind, text.clone(), v.clone());
            m.id = memory_id(i);
            chunks[i % 8].push((i, m));
        }
        chunks
    };
    let total = c.memories.len();
    let mut handles = Vec::new();
    for chunk in chunks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(chunk.len());
            for (i, m) in chunk {
                ids.push((i, store.put_memory(m).await?.id));
                if i % 10_000 == 0 {
                    eprintln!("[memory_search] stored {i} of {total}");
                }
            }
            Ok::<_, StoreError>(ids)
        }));
    }
    let mut ids = vec![MemoryId::new(); total];
    for h in handles {
        for (i, id) in h.await.expect("a loader panicked")? {
            ids[i] = id;
        }
    }
    Ok((ids, start.elapsed().as_secs_f64()))
}

/// A keyword search to compare the store's with, in the same run.
#[async_trait::async_trait]
trait Baseline: Sync {
    /// The ids of the top 20 memories for `text`.
    async fn top(&self, text: &str) -> Result<Vec<MemoryId>, StoreError>;
}

/// The keyword query before its candidates were bounded, as raw SQL over the store's schema.
#[cfg(feature = "postgres")]
struct RankAll {
    pool: sqlx::PgPool,
}

#[cfg(feature = "postgres")]
impl RankAll {
    async fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        use std::str::FromStr;
        let err = |e: sqlx::Error| StoreError::InvalidInput(e.to_string());
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(err)?
            .options([("search_path", format!("{schema},public"))]);
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options).await.map_err(err)?;
        Ok(Self { pool })
    }
}

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl Baseline for RankAll {
    /// The ids of the top 20 memories holding any term of `text`, by `ts_rank`.
    async fn top(&self, text: &str) -> Result<Vec<MemoryId>, StoreError> {
        let mut ts = omoi_core::memory::terms(text);
        ts.sort();
        ts.dedup();
        let any = ts.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(" | ");
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT m.id FROM memories m, to_tsquery('english', $1) q WHERE m.search @@ q \
              ORDER BY ts_rank(m.search, q) DESC, m.id LIMIT 20",
        )
        .bind(any)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        Ok(ids.into_iter().map(MemoryId::from_uuid).collect())
    }
}

async fn measure(
    store: Arc<dyn MemoryStore>,
    name: &str,
    a: &Args,
    baseline: Option<&dyn Baseline>,
) -> Result<serde_json::Value, StoreError> {
    eprintln!("[memory_search] generating {} memories of {} dims", a.memories, a.dims);
    let c = corpus(a);
    let (ids, load_s) = if holds(store.as_ref(), &c).await {
        eprintln!("[memory_search] the store already holds them; not loading");
        ((0..c.memories.len()).map(memory_id).collect(), None)
    } else {
        let (ids, s) = load(store.clone(), &c).await?;
        eprintln!("[memory_search] loaded in {s:.1} s");
        (ids, Some((s * 10.0).round() / 10.0))
    };
    eprintln!("[memory_search] computing the exact top 10 of each query");
    let exact: Vec<Vec<MemoryId>> = c
        .queries
        .iter()
        .map(|(_, q)| {
            let mut scored: Vec<(f64, usize)> =
                c.memories.iter().enumerate().map(|(i, (_, v))| (cosine(q, v), i)).collect();
            scored.select_nth_unstable_by(9, |x, y| y.0.total_cmp(&x.0));
            scored[..10].iter().map(|(_, i)| ids[*i]).collect()
        })
        .collect();
    // Each mode on its own: a warm-up pass over every query, then the measured pass, so each
    // meets the same cache (the working set is larger than Postgres' shared buffers here).
    let (mut hybrid, mut vector, mut recall) = (Vec::new(), Vec::new(), 0.0);
    let (mut keyword, mut rank_all, mut overlap) = (Vec::new(), Vec::new(), 0.0);
    let timed = async |mode: SearchMode, limit: usize, text: &str, q: &[f32]| {
        let query = MemoryQuery::hybrid(text, q.to_vec()).with_limit(limit).with_mode(mode);
        let t = Instant::now();
        let found = store.search_memories(&query).await?;
        Ok::<_, StoreError>((t.elapsed().as_secs_f64() * 1e3, found))
    };
    for pass in 0..2 {
        for (text, q) in &c.queries {
            let (ms, _) = timed(SearchMode::Hybrid, 10, text, q).await?;
            if pass == 1 {
                hybrid.push(ms);
            }
        }
    }
    for pass in 0..2 {
        for (i, (text, q)) in c.queries.iter().enumerate() {
            let (ms, found) = timed(SearchMode::Vector, 10, text, q).await?;
            if pass == 1 {
                vector.push(ms);
                recall += found.iter().filter(|hit| exact[i].contains(&hit.memory.id)).count() as f64 / 10.0;
            }
        }
    }
    if let Some(b) = baseline {
        let mut tops = Vec::new();
        for pass in 0..2 {
            for (text, _) in &c.queries {
                let t = Instant::now();
                let top = b.top(text).await?;
                if pass == 1 {
                    rank_all.push(t.elapsed().as_secs_f64() * 1e3);
                    tops.push(top);
                }
            }
        }
        for pass in 0..2 {
            for (i, (text, q)) in c.queries.iter().enumerate() {
                let (ms, found) = timed(SearchMode::Keyword, 20, text, q).await?;
                if pass == 1 {
                    keyword.push(ms);
                    let same = found.iter().filter(|hit| tops[i].contains(&hit.memory.id)).count();
                    overlap += same as f64 / tops[i].len().max(1) as f64;
                }
            }
        }
    }
    let ms = |mut v: Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v.first().map(|_| (percentile(&v, p) * 100.0).round() / 100.0)
    };
    hybrid.sort_by(f64::total_cmp);
    vector.sort_by(f64::total_cmp);
    Ok(json!({
        "backend": name,
        "memories": a.memories,
        "dims": a.dims,
        "queries": a.queries,
        "load_s": load_s,
        "hybrid_p50_ms": (percentile(&hybrid, 0.5) * 100.0).round() / 100.0,
        "hybrid_p99_ms": (percentile(&hybrid, 0.99) * 100.0).round() / 100.0,
        "vector_p50_ms": (percentile(&vector, 0.5) * 100.0).round() / 100.0,
        "vector_p99_ms": (percentile(&vector, 0.99) * 100.0).round() / 100.0,
        "recall_at_10": (recall / a.queries as f64 * 1000.0).round() / 1000.0,
        "keyword_p50_ms": ms(keyword.clone(), 0.5),
        "keyword_p99_ms": ms(keyword, 0.99),
        "rank_all_keyword_p50_ms": ms(rank_all.clone(), 0.5),
        "rank_all_keyword_p99_ms": ms(rank_all.clone(), 0.99),
        "keyword_overlap": (!rank_all.is_empty()).then(|| (overlap / a.queries as f64 * 1000.0).round() / 1000.0),
    }))
}

async fn run(a: &Args) -> Result<serde_json::Value, String> {
    let err = |e: StoreError| e.to_string();
    match a.backend.as_str() {
        "memory" => {
            measure(Arc::new(InMemoryStore::new().with_dimensions(a.dims)), "memory", a, None).await.map_err(err)
        }
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let store = omoi_store::SqliteStore::builder(dir.path().join("bench.db"))
                .dimensions(a.dims)
                .open()
                .await
                .map_err(err)?;
            measure(Arc::new(store), "sqlite", a, None).await.map_err(err)
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let url = a
                .url
                .clone()
                .or_else(|| std::env::var("OMOI_TEST_POSTGRES_URL").ok())
                .ok_or("postgres needs --url or OMOI_TEST_POSTGRES_URL")?;
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
            let schema = a.keep.clone().unwrap_or_else(|| format!("omoi_bench_mem_{}", nanos % 1_000_000_000_000));
            let store = omoi_store::PostgresStore::builder(url.clone())
                .schema(schema.clone())
                .dimensions(a.dims)
                .max_connections(12)
                .connect()
                .await
                .map_err(err)?;
            let baseline = RankAll::connect(&url, &schema).await.map_err(err)?;
            let out = measure(Arc::new(store.clone()), "postgres", a, Some(&baseline)).await;
            if a.keep.is_none() {
                store.drop_schema().await.map_err(err)?;
            }
            out.map_err(err)
        }
        other => Err(format!("backend {other} is not built in (crate features)")),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match rt.block_on(run(&args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("memory_search failed: {e}");
            ExitCode::FAILURE
        }
    }
}
