//! The expansion shared by the per-port suite macros.
//!
//! Each suite module (`suites/<port>.rs`) ends with its own `<port>_suite!` macro listing its
//! scenarios, so a new scenario touches only its own file; the test below fails when a
//! scenario of a suite file is missing from that file's list.

/// Expands scenarios of a suite into tests. Internal; use the per-port macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __omoi_suite {
    ($module:ident, $factory:expr, [$($scenario:ident),* $(,)?]) => {
        #[allow(non_snake_case)]
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let clock = $crate::testkit::ManualClock::new();
                    let Some(store) = ($factory)(::std::sync::Arc::clone(&clock)).await else { return };
                    let harness = $crate::testkit::suites::$module::Harness::new(store, clock);
                    let run = $crate::testkit::suites::$module::$scenario(harness);
                    ::tokio::time::timeout(::std::time::Duration::from_secs(180), run)
                        .await
                        .expect(concat!(stringify!($scenario), " did not finish within 180 s"));
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Names of the scenarios a suite file defines: its top-level `pub async fn`s.
    fn scenarios(src: &str) -> BTreeSet<String> {
        src.lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|rest| rest.split(['(', '<']).next().unwrap_or_default().trim().to_owned())
            .collect()
    }

    /// Names in the scenario list the file's suite macro hands to `__omoi_suite!`, or `None`
    /// when the file has no suite macro.
    fn listed(src: &str) -> Option<BTreeSet<String>> {
        let call = src.find("$crate::__omoi_suite!(")?;
        let open = call + src[call..].find('[')?;
        let close = open + src[open..].find(']')?;
        Some(src[open + 1..close].split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect())
    }

    #[test]
    fn every_scenario_of_every_suite_file_is_in_its_suite_macro() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testkit/suites");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("read suites dir") {
            let path = entry.expect("dir entry").path();
            let src = std::fs::read_to_string(&path).expect("read suite file");
            let defined = scenarios(&src);
            if defined.is_empty() {
                continue;
            }
            let file = path.display();
            let listed = listed(&src).unwrap_or_else(|| panic!("{file} defines scenarios but no suite macro"));
            let missing: Vec<_> = defined.difference(&listed).collect();
            assert!(missing.is_empty(), "{file}: scenarios missing from its suite macro: {missing:?}");
            let unknown: Vec<_> = listed.difference(&defined).collect();
            assert!(unknown.is_empty(), "{file}: suite macro lists what is not a scenario: {unknown:?}");
            checked += 1;
        }
        assert!(checked >= 9, "expected every suite file to be checked, checked {checked}");
    }

    #[test]
    fn the_check_sees_a_scenario_left_out() {
        let src = "pub async fn a(h: Harness) {}\npub async fn b(h: Harness) {}\n\
                   macro_rules! x_suite { ($f:expr) => { $crate::__omoi_suite!(x, $f, [a,]); }; }";
        let defined = scenarios(src);
        let listed = listed(src).expect("macro found");
        assert_eq!(defined.difference(&listed).collect::<Vec<_>>(), ["b"]);
    }
}
