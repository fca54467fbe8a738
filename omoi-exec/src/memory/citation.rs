//! Citations: which lines of which file a memory is about, hashed so a later change of those
//! lines shows the memory is stale.

use std::path::PathBuf;

use async_trait::async_trait;
use omoi_core::memory::Citation;
use omoi_core::{Sandbox, WorkspacePath};
use sha2::{Digest, Sha256};

/// Read access to the files memories cite (a task's workspace).
#[async_trait]
pub trait SourceFiles: Send + Sync {
    /// The text of `path` (relative to the workspace root), or `None` if it cannot be read.
    async fn read_text(&self, path: &str) -> Option<String>;
}

/// The files of a sandbox's workspace.
#[derive(Clone, Copy)]
pub struct SandboxFiles<'a>(pub &'a dyn Sandbox);

#[async_trait]
impl SourceFiles for SandboxFiles<'_> {
    async fn read_text(&self, path: &str) -> Option<String> {
        let path = WorkspacePath::parse(path).ok()?;
        String::from_utf8(self.0.read_file(&path).await.ok()?).ok()
    }
}

/// The files under a local directory.
#[derive(Debug, Clone)]
pub struct DirFiles(pub PathBuf);

#[async_trait]
impl SourceFiles for DirFiles {
    async fn read_text(&self, path: &str) -> Option<String> {
        let path = WorkspacePath::parse(path).ok()?;
        tokio::fs::read_to_string(path.under(&self.0)).await.ok()
    }
}

/// Hex SHA-256 of lines `start..=end` (1-based) of `text`, each followed by `\n`; `None` if
/// the range is empty or past the end.
pub fn hash_lines(text: &str, start: u32, end: u32) -> Option<String> {
    if start == 0 || end < start {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let slice = lines.get(start as usize - 1..end as usize)?;
    let mut h = Sha256::new();
    for line in slice {
        h.update(line.as_bytes());
        h.update(b"\n");
    }
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A citation of lines `start..=end` of `path`, whose current text is `text`.
pub fn cite(path: &str, text: &str, start: u32, end: u32) -> Option<Citation> {
    Some(Citation {
        path: path.to_owned(),
        start_line: start,
        end_line: end,
        content_hash: hash_lines(text, start, end)?,
    })
}

/// A citation of the whole of `path` (at most its first `max_lines` lines).
pub fn cite_file(path: &str, text: &str, max_lines: u32) -> Option<Citation> {
    let n = u32::try_from(text.lines().count()).unwrap_or(u32::MAX).min(max_lines);
    cite(path, text, 1, n)
}

/// A citation of the lines of `path` holding `snippet` (its first occurrence), or of the whole
/// file when the snippet is not found (it may have been clipped or edited again).
pub fn cite_snippet(path: &str, text: &str, snippet: &str, max_lines: u32) -> Option<Citation> {
    let snippet = snippet.trim_matches('\n');
    match text.find(snippet).filter(|_| !snippet.trim().is_empty()) {
        Some(at) => {
            let start = u32::try_from(text[..at].matches('\n').count() + 1).unwrap_or(u32::MAX);
            let span = u32::try_from(snippet.matches('\n').count()).unwrap_or(0);
            cite(path, text, start, start.saturating_add(span))
        }
        None => cite_file(path, text, max_lines),
    }
}

/// Whether any citation no longer matches the files: the file is gone, or its cited lines hash
/// differently. A memory without citations is never stale.
pub async fn is_stale(citations: &[Citation], files: &dyn SourceFiles) -> bool {
    for c in citations {
        let current = files.read_text(&c.path).await;
        let hash = current.as_deref().and_then(|t| hash_lines(t, c.start_line, c.end_line));
        if hash.as_deref() != Some(c.content_hash.as_str()) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "fn a() {}\nfn b() {\n    1\n}\n";

    #[test]
    fn hashes_cover_exactly_the_cited_lines() {
        let h = hash_lines(TEXT, 2, 4).unwrap();
        assert_eq!(h.len(), 64);
        assert_eq!(hash_lines("x\nfn b() {\n    1\n}", 2, 4).unwrap(), h, "other lines do not matter");
        assert_ne!(hash_lines(TEXT, 2, 3).unwrap(), h);
        assert_eq!(hash_lines(TEXT, 3, 9), None);
        assert_eq!(hash_lines(TEXT, 0, 1), None);
    }

    #[test]
    fn snippets_are_located_or_the_file_is_cited() {
        let c = cite_snippet("src/lib.rs", TEXT, "fn b() {\n    1", 100).unwrap();
        assert_eq!((c.start_line, c.end_line), (2, 3));
        let whole = cite_snippet("src/lib.rs", TEXT, "gone… [9 bytes]", 100).unwrap();
        assert_eq!((whole.start_line, whole.end_line), (1, 4));
        assert_eq!(cite_file("src/lib.rs", TEXT, 2).unwrap().end_line, 2);
    }

    #[tokio::test]
    async fn a_changed_or_missing_file_makes_a_citation_stale() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rs"), TEXT).unwrap();
        let files = DirFiles(dir.path().to_owned());
        let c = cite("a.rs", TEXT, 2, 4).unwrap();
        assert!(!is_stale(std::slice::from_ref(&c), &files).await);
        std::fs::write(dir.path().join("a.rs"), "// header\nfn a() {}\nfn b() {\n    2\n}\n").unwrap();
        assert!(is_stale(std::slice::from_ref(&c), &files).await);
        std::fs::remove_file(dir.path().join("a.rs")).unwrap();
        assert!(is_stale(&[c], &files).await);
        assert!(!is_stale(&[], &files).await);
    }
}
