//! Id formats: `REQ-FEAT-CAT-NNN`, `US-NNN`, `TKT-NNN`, `TSK-NNN`.

fn upper_run(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn digits(s: &str, min: usize) -> bool {
    s.len() >= min && s.bytes().all(|b| b.is_ascii_digit())
}

/// `REQ-[A-Z]{2,6}-[A-Z]{2,6}-\d{3}` (OmoiOS's strict pattern).
pub fn is_requirement_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    matches!(parts.as_slice(), ["REQ", f, c, n] if upper_run(f, 2, 6) && upper_run(c, 2, 6) && n.len() == 3 && digits(n, 3))
}

fn prefixed(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')).is_some_and(|n| digits(n, 3))
}

/// `US-NNN` (three or more digits).
pub fn is_user_story_id(id: &str) -> bool {
    prefixed(id, "US")
}

/// `TKT-NNN` (three or more digits).
pub fn is_ticket_id(id: &str) -> bool {
    prefixed(id, "TKT")
}

/// `TSK-NNN` (three or more digits).
pub fn is_task_id(id: &str) -> bool {
    prefixed(id, "TSK")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_formats() {
        assert!(is_requirement_id("REQ-SLUG-CORE-001"));
        assert!(!is_requirement_id("REQ-SLUG-001"));
        assert!(!is_requirement_id("REQ-S-CORE-001"));
        assert!(!is_requirement_id("REQ-SLUG-CORE-01"));
        assert!(!is_requirement_id("req-slug-core-001"));
        assert!(is_task_id("TSK-001") && is_task_id("TSK-1000") && !is_task_id("TSK-01") && !is_task_id("T-001"));
        assert!(is_ticket_id("TKT-003") && !is_ticket_id("TKT003"));
        assert!(is_user_story_id("US-002") && !is_user_story_id("US-2"));
    }
}
