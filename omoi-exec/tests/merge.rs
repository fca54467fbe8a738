//! Conflict-ordered merging with `git merge-tree --write-tree`, on real repositories.

use omoi_exec::git::{GitRepo, MergeError, merge_in_conflict_order, score_branches};

async fn write(repo: &GitRepo, file: &str, text: &str) {
    tokio::fs::write(repo.path().join(file), text).await.unwrap();
}

async fn commit(repo: &GitRepo, msg: &str) {
    repo.run(&["add", "-A"]).await.unwrap();
    repo.run(&["commit", "-q", "-m", msg]).await.unwrap();
}

/// main: a.txt, b.txt; three branches from the first commit, then main moves on.
async fn fixture() -> (tempfile::TempDir, GitRepo) {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(dir.path()).await.unwrap();
    write(&repo, "a.txt", "alpha\n").await;
    write(&repo, "b.txt", "beta\n").await;
    commit(&repo, "base").await;
    for (branch, edits) in [
        ("task/clean", vec![("c.txt", "gamma\n")]),
        ("task/one", vec![("a.txt", "alpha from one\n")]),
        ("task/two", vec![("a.txt", "alpha from two\n"), ("b.txt", "beta from two\n")]),
    ] {
        repo.run(&["checkout", "-q", "-b", branch, "main"]).await.unwrap();
        for (f, t) in edits {
            write(&repo, f, t).await;
        }
        commit(&repo, branch).await;
    }
    repo.run(&["checkout", "-q", "main"]).await.unwrap();
    write(&repo, "a.txt", "alpha on main\n").await;
    write(&repo, "b.txt", "beta on main\n").await;
    commit(&repo, "main moves on").await;
    (dir, repo)
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn merge_tree_scores_count_conflicting_files_and_order_ascending() {
    let (_dir, repo) = fixture().await;
    let scores = score_branches(&repo, "main", &names(&["task/two", "task/one", "task/clean"])).await.unwrap();
    let order: Vec<(&str, usize)> = scores.iter().map(|s| (s.branch.as_str(), s.conflicts.len())).collect();
    assert_eq!(order, [("task/clean", 0), ("task/one", 1), ("task/two", 2)]);
    assert_eq!(scores[2].conflicts, ["a.txt", "b.txt"]);
}

#[tokio::test]
async fn merge_tree_conflict_order_merges_clean_first_and_stops_naming_the_files() {
    let (_dir, repo) = fixture().await;
    let before = repo.rev_parse("main").await.unwrap();
    let report = merge_in_conflict_order(&repo, "main", &names(&["task/two", "task/one", "task/clean"])).await.unwrap();
    assert_eq!(report.merged.len(), 1);
    assert_eq!(report.merged[0].0, "task/clean");
    let stop = report.stopped.expect("a conflict stops the run");
    assert_eq!((stop.branch.as_str(), stop.files.clone()), ("task/one", vec!["a.txt".to_owned()]));
    // main advanced by exactly the clean merge, whose parents are the old main and the branch.
    let head = repo.rev_parse("main").await.unwrap();
    assert_ne!(head, before);
    let parents = repo.run(&["rev-list", "--parents", "-n1", "main"]).await.unwrap();
    assert!(parents.contains(&before) && parents.contains(&repo.rev_parse("task/clean").await.unwrap()));
    assert_eq!(tokio::fs::read_to_string(repo.path().join("c.txt")).await.unwrap(), "gamma\n", "worktree follows");
    assert_eq!(tokio::fs::read_to_string(repo.path().join("a.txt")).await.unwrap(), "alpha on main\n");
}

#[tokio::test]
async fn merge_tree_rechecks_each_branch_against_the_advancing_base() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(dir.path()).await.unwrap();
    for b in ["task/x", "task/y"] {
        repo.run(&["checkout", "-q", "-b", b, "main"]).await.unwrap();
        write(&repo, "new.txt", &format!("from {b}\n")).await;
        commit(&repo, b).await;
    }
    repo.run(&["checkout", "-q", "main"]).await.unwrap();
    let scores = score_branches(&repo, "main", &names(&["task/y", "task/x"])).await.unwrap();
    assert!(scores.iter().all(|s| s.conflicts.is_empty()), "each is clean against the original base");
    let report = merge_in_conflict_order(&repo, "main", &names(&["task/y", "task/x"])).await.unwrap();
    assert_eq!(report.merged.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["task/x"]);
    assert_eq!(report.stopped.unwrap().files, ["new.txt"], "y conflicts once x is in");
}

#[tokio::test]
async fn all_clean_branches_merge_in_order() {
    let (_dir, repo) = fixture().await;
    let report = merge_in_conflict_order(&repo, "main", &names(&["task/clean"])).await.unwrap();
    assert!(report.stopped.is_none());
    assert_eq!(report.merged.len(), 1);
    let err = merge_in_conflict_order(&repo, "main", &names(&["no/such/branch"])).await.unwrap_err();
    assert!(err.to_string().contains("merge-tree"), "{err}");
}

#[tokio::test]
async fn dirty_checkout_of_the_base_is_refused_naming_the_branch_and_nothing_moves() {
    let (_dir, repo) = fixture().await;
    let before = repo.rev_parse("main").await.unwrap();
    write(&repo, "b.txt", "uncommitted work\n").await;
    let err = merge_in_conflict_order(&repo, "main", &names(&["task/clean"])).await.unwrap_err();
    match &err {
        MergeError::DirtyCheckout { branch, changes, .. } => {
            assert_eq!(branch, "main");
            assert!(changes.iter().any(|c| c.ends_with("b.txt")), "{changes:?}");
        }
        other => panic!("expected a dirty checkout, got {other:?}"),
    }
    assert!(err.to_string().contains("main"), "{err}");
    assert_eq!(repo.rev_parse("main").await.unwrap(), before, "the base did not move");
    assert_eq!(tokio::fs::read_to_string(repo.path().join("b.txt")).await.unwrap(), "uncommitted work\n");
    assert!(!repo.path().join("c.txt").exists());
}

#[tokio::test]
async fn dirty_checkout_in_a_linked_worktree_is_refused_too() {
    let (dir, repo) = fixture().await;
    repo.run(&["checkout", "-q", "task/one"]).await.unwrap();
    let linked = dir.path().join("linked");
    repo.run(&["worktree", "add", "-q", linked.to_str().unwrap(), "main"]).await.unwrap();
    tokio::fs::write(linked.join("a.txt"), "edited in the linked worktree\n").await.unwrap();
    let before = repo.rev_parse("main").await.unwrap();
    let err = merge_in_conflict_order(&repo, "main", &names(&["task/clean"])).await.unwrap_err();
    assert!(
        matches!(&err, MergeError::DirtyCheckout { branch, worktree, .. } if branch == "main" && worktree.ends_with("linked")),
        "{err:?}"
    );
    assert_eq!(repo.rev_parse("main").await.unwrap(), before);
    assert_eq!(tokio::fs::read_to_string(linked.join("a.txt")).await.unwrap(), "edited in the linked worktree\n");
}

#[tokio::test]
async fn dirty_checkout_of_another_branch_is_left_alone_while_the_base_merges() {
    let (_dir, repo) = fixture().await;
    repo.run(&["checkout", "-q", "task/two"]).await.unwrap();
    write(&repo, "a.txt", "work in progress on two\n").await;
    write(&repo, "scratch.txt", "untracked\n").await;
    let report = merge_in_conflict_order(&repo, "main", &names(&["task/clean"])).await.unwrap();
    assert_eq!(report.merged.len(), 1);
    assert_eq!(repo.run(&["symbolic-ref", "--short", "HEAD"]).await.unwrap().trim(), "task/two");
    assert_eq!(tokio::fs::read_to_string(repo.path().join("a.txt")).await.unwrap(), "work in progress on two\n");
    assert_eq!(tokio::fs::read_to_string(repo.path().join("scratch.txt")).await.unwrap(), "untracked\n");
    assert!(!repo.path().join("c.txt").exists(), "the checked-out worktree was not touched");
    let files = repo.run(&["ls-tree", "--name-only", "main"]).await.unwrap();
    assert!(files.lines().any(|f| f == "c.txt"), "{files}");
}

#[tokio::test]
async fn dirty_checkout_with_an_untracked_file_the_merge_would_overwrite_is_refused() {
    let (_dir, repo) = fixture().await;
    write(&repo, "c.txt", "my own untracked c\n").await;
    write(&repo, "notes.txt", "harmless untracked\n").await;
    let before = repo.rev_parse("main").await.unwrap();
    let err = merge_in_conflict_order(&repo, "main", &names(&["task/clean"])).await.unwrap_err();
    assert!(matches!(&err, MergeError::DirtyCheckout { branch, .. } if branch == "main"), "{err:?}");
    assert_eq!(repo.rev_parse("main").await.unwrap(), before);
    assert_eq!(tokio::fs::read_to_string(repo.path().join("c.txt")).await.unwrap(), "my own untracked c\n");
    // Without the colliding file the clean checkout follows and the harmless one survives.
    tokio::fs::remove_file(repo.path().join("c.txt")).await.unwrap();
    merge_in_conflict_order(&repo, "main", &names(&["task/clean"])).await.unwrap();
    assert_eq!(tokio::fs::read_to_string(repo.path().join("c.txt")).await.unwrap(), "gamma\n");
    assert_eq!(tokio::fs::read_to_string(repo.path().join("notes.txt")).await.unwrap(), "harmless untracked\n");
    assert!(repo.run(&["status", "--porcelain", "--untracked-files=no"]).await.unwrap().trim().is_empty());
}
