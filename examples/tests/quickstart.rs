//! The README's main job, end to end: runs the built `quickstart` example (with the recorded
//! model) in a fresh directory and checks that it specified, executed, validated and merged.

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/quickstart`, built by `cargo test` alongside this test.
fn quickstart_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    deps.parent().unwrap().join("examples").join("quickstart")
}

#[test]
fn quickstart_runs_every_phase_executes_the_tasks_and_merges_a_tested_branch() {
    let bin = quickstart_binary();
    assert!(bin.exists(), "{} was not built", bin.display());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("run");
    let out = Command::new(&bin)
        .env("OMOI_QUICKSTART_DIR", &work)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "quickstart failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for phase in ["explore", "prd", "requirements", "design", "tasks", "sync"] {
        assert!(stdout.contains(&format!("✓ {phase} passed")), "{phase} did not pass:\n{stdout}");
    }
    assert!(stdout.contains("requirements passed with 0.97 after 2 attempts"), "the retry with feedback shows");
    assert!(stdout.contains("validation (TSK-004): tests passed"));
    assert!(stdout.contains("merged 3 branches"));
    assert!(stdout.contains("tests on main: OK (Ran 9 tests"), "{stdout}");
    // Memory: the tasks wrote lessons citing what they changed, and a follow-up request
    // retrieves them; the explore phase's knowledge of the old strings.py shows as stale.
    assert!(stdout.contains("wrote [learning] Add slugify to textkit.strings"), "{stdout}");
    assert!(stdout.contains("cites textkit/__init__.py:1-5, textkit/strings.py:1-35)"), "{stdout}");
    let retrieved = stdout.split("retrieves:").nth(1).unwrap_or_default();
    assert!(retrieved.contains("- [learning] Add slugify to textkit.strings"), "{stdout}");
    assert!(
        retrieved.contains("[codebase_knowledge] slugify (explore phase)") && retrieved.contains("STALE"),
        "{stdout}"
    );
    // The merged repository really contains the feature.
    let strings = std::fs::read_to_string(work.join("textkit/textkit/strings.py")).unwrap();
    assert!(strings.contains("def slugify(text: str) -> str:"));
    assert!(work.join("textkit/tests/test_slugify.py").exists());
    assert!(work.join("omoi.db").exists(), "state lives in one SQLite file");
    let log =
        Command::new("git").args(["log", "--oneline", "main"]).current_dir(work.join("textkit")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().filter(|l| l.contains("Merge omoi/")).count(), 3);
}
