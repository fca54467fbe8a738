//! The README's main job, end to end: runs the built `quickstart` example (with the recorded
//! model) in a fresh directory and checks that it specified, executed, validated and merged;
//! that a second feature request started with a memory the first wrote back (printed with its
//! citation) and used it; and that the stuck detector caught its looping agent, steered it
//! between turns, and the agent acknowledged the steer and finished.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `target/<profile>/examples/quickstart`, built by `cargo test` alongside this test.
fn quickstart_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    deps.parent().unwrap().join("examples").join("quickstart")
}

/// One run of the quickstart, shared by the tests.
struct Run {
    /// Its working directory (under the target's temporary directory, replaced on each run).
    work: PathBuf,
    stdout: String,
}

/// Runs the quickstart once (the first test to ask waits for it), in a fresh directory.
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let bin = quickstart_binary();
        assert!(bin.exists(), "{} was not built", bin.display());
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quickstart-run");
        if work.exists() {
            std::fs::remove_dir_all(&work).unwrap();
        }
        let out = Command::new(&bin)
            .env("OMOI_QUICKSTART_DIR", &work)
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "quickstart failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        Run { work, stdout }
    })
}

#[test]
fn quickstart_runs_every_phase_revises_after_a_failed_validation_and_merges_the_validated_fix() {
    let Run { work, stdout } = run();
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
    assert!(stdout.contains("tests on main: OK (Ran 12 tests"), "{stdout}");
    // The merged repository really contains the feature.
    let strings = std::fs::read_to_string(work.join("textkit/textkit/strings.py")).unwrap();
    assert!(strings.contains("def slugify(text: str) -> str:"));
    assert!(work.join("textkit/tests/test_slugify.py").exists());
    assert!(work.join("omoi.db").exists(), "state lives in one SQLite file");
    let log =
        Command::new("git").args(["log", "--oneline", "main"]).current_dir(work.join("textkit")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().filter(|l| l.contains("Merge omoi/")).count(), 5);
    let strings = std::fs::read_to_string(work.join("textkit/textkit/strings.py")).unwrap();
    assert!(strings.contains(".strip(\"-\")"), "the revision's fix is merged");
}

/// The lines of `stdout` from the one starting with `from` on.
fn after<'a>(stdout: &'a str, from: &str) -> &'a str {
    let at = stdout.find(from).unwrap_or_else(|| panic!("no {from:?} in:\n{stdout}"));
    &stdout[at..]
}

#[test]
fn a_second_feature_request_starts_with_the_first_runs_memory_and_a_looping_agent_is_steered_to_finish() {
    let Run { work, stdout } = run();
    // The first run wrote the revision's error fix back, citing the line it changed.
    let first = &stdout[..stdout.find("4. a second feature request").expect("a second request")];
    assert!(
        first.contains("✎ learned [error_fix] `python3 -m unittest discover -s tests -v` failed: exit code 1"),
        "{first}"
    );
    // The second request's agent starts with it, error fixes first, cited by path, lines and
    // the SHA-256 of the cited lines…
    let second = after(stdout, "4. a second feature request");
    let given = after(second, "◇ SNK-001  starts with");
    let mut lines = given.lines().skip(1);
    assert_eq!(
        lines.next().unwrap().trim(),
        "[error_fix] `python3 -m unittest discover -s tests -v` failed: exit code 1"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .trim()
            .starts_with("Fix (Revise after Run the test suite (iteration 1)): fixed by changing textkit/strings.py")
    );
    // line 35 is `    return _NON_ALNUM.sub("-", ascii_text.lower()).strip("-")`.
    assert_eq!(lines.next().unwrap().trim(), "cites textkit/strings.py:35-35 sha256 c3ff9ba2ebc7");
    // …which is what the model was given…
    let prompt = after(second, "the memories in SNK-001's first prompt (what the model was given):");
    let mut lines = prompt.lines().skip(1);
    assert!(
        lines.next().unwrap().trim().starts_with("- [error_fix] `python3 -m unittest discover -s tests -v` failed")
    );
    assert_eq!(lines.next().unwrap().trim(), "(cites textkit/strings.py:35-35)");
    // …and uses: it strips the edge separators from the start, and its tests pass on main.
    assert!(second.contains("“ SNK-001  The remembered slugify fix applies here"), "{second}");
    let strings = std::fs::read_to_string(work.join("textkit/textkit/strings.py")).unwrap();
    assert!(strings.contains("return _NON_ALNUM.sub(\"_\", ascii_text.lower()).strip(\"_\")"), "{strings}");
    assert!(work.join("textkit/tests/test_snake_case.py").exists());
    // Its recorded conversation loops on the same passing test run; the stuck detector finds
    // it, the steer is recorded, delivered between turns and acknowledged, and the agent
    // finishes (the recording's continuation once steered).
    let order = [
        "· SNK-001  run_command python3 -m unittest discover -s tests 2>&1 | tail -n 1",
        "· SNK-001  … the same call",
        "⚠ SNK-001  stuck: repeated_action_result (4×), found by the stuck detector",
        "⚑ SNK-001  intervention recorded: guidance from stuck_detector",
        "✓ SNK-001  acknowledged the intervention",
        "↪ SNK-001  steered between turns (guidance from stuck_detector): You ran the same action 4 times",
        "“ SNK-001  Right: the suite passed every time and running it again changes nothing. Finishing.",
        "SNK-001 completed",
        "the model answered 1 request(s) after it was steered",
        "merged 1 branch",
    ];
    let mut rest = second;
    for line in order {
        rest = after(rest, line);
    }
    assert_eq!(second.matches("⚑ SNK-001  intervention recorded").count(), 1, "one steer was enough");
}
