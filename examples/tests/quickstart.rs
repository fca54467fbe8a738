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
fn quickstart_runs_every_phase_revises_after_a_failed_validation_and_merges_the_validated_fix() {
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
    // The validation's verdict comes from its test run: the edge case fails, so a blocking bug
    // discovery branches the fix and a new validation, which passes; the fix is merged.
    assert!(
        stdout.contains(
            "validation (TSK-004): tests FAILED (failed: `python3 -m unittest discover -s tests -v` exited 1)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("◆ TSK-004  discovery: bug"), "{stdout}");
    assert!(stdout.contains("TSK-004.1 branched (discovery)"), "{stdout}");
    assert!(stdout.contains("revision and re-validation branched as TSK-004.1, TSK-004.1.2"), "{stdout}");
    assert!(
        stdout.contains("Revise after Run the test suite (iteration 1) implementation completed  ← branch of TSK-004")
    );
    assert!(stdout.contains(
        "validation (TSK-004.1.2): tests passed (passed: `python3 -m unittest discover -s tests -v` exited 0)"
    ));
    assert!(stdout.contains("resolved: its branch completed"), "{stdout}");
    assert!(stdout.contains("merged 4 branches"), "{stdout}");
    assert!(stdout.contains("tests on main: OK (Ran 9 tests"), "{stdout}");
    // The merged repository really contains the feature.
    let strings = std::fs::read_to_string(work.join("textkit/textkit/strings.py")).unwrap();
    assert!(strings.contains("def slugify(text: str) -> str:"));
    assert!(work.join("textkit/tests/test_slugify.py").exists());
    assert!(work.join("omoi.db").exists(), "state lives in one SQLite file");
    let log =
        Command::new("git").args(["log", "--oneline", "main"]).current_dir(work.join("textkit")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().filter(|l| l.contains("Merge omoi/")).count(), 4);
    let strings = std::fs::read_to_string(work.join("textkit/textkit/strings.py")).unwrap();
    assert!(strings.contains(".strip(\"-\")"), "the revision's fix is merged");
}
