//! Shared code of the omoi examples: the reference [`server`] (`cargo run --release --example
//! server`), the model the examples run on ([`model`]) and progress output for long runs. The
//! examples themselves are described in the repository's README, whose code blocks are
//! compiled and run as this crate's doctests.

pub mod model;
pub mod server;

/// The README's code blocks, run as doctests (not part of the documentation: its links point at
/// the repository's folders).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

use std::fmt::Write;

use omoi_core::{TaskCounts, TaskState};

/// One line summarizing a task board: `waiting 12 | ready 3 | running 2 | done 20/40 [#####.....]`.
pub fn board_line(counts: &TaskCounts) -> String {
    let get = |s: TaskState| counts.get(&s).copied().unwrap_or(0);
    let total: u64 = counts.values().sum();
    let done = get(TaskState::Completed);
    let width = 30u64;
    let filled = (done * width).checked_div(total).unwrap_or(0);
    let mut bar = String::new();
    for i in 0..width {
        bar.push(if i < filled { '#' } else { '.' });
    }
    let mut line = format!(
        "waiting {:>3} | ready {:>3} | running {:>3} | failed {:>2} | done {:>3}/{:<3} [{bar}]",
        get(TaskState::Waiting) + get(TaskState::Blocked),
        get(TaskState::Ready),
        get(TaskState::Claimed) + get(TaskState::Running),
        get(TaskState::Failed),
        done,
        total,
    );
    if get(TaskState::Cancelled) > 0 {
        let _ = write!(line, " cancelled {}", get(TaskState::Cancelled));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_counts_and_bar() {
        let mut c = TaskCounts::new();
        c.insert(TaskState::Completed, 5);
        c.insert(TaskState::Ready, 5);
        let line = board_line(&c);
        assert!(line.contains("done   5/10"), "{line}");
        assert!(line.contains("[###############...............]"), "{line}");
    }
}
