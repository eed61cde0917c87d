//! The texts of the staff tasks lead routing makes, in Chinese then English (one line each,
//! so an inbox shows both): the other owner of a merged lead, the owner of a lead split back,
//! and a team lead's overdue first contact.

use siyu_domain::Millis;

/// For the owner of lead `lead`, merged into `into` (kept by `keeper`).
pub fn merged(lead: i64, into: i64, keeper: Option<&str>) -> String {
    let (zh, en) = match keeper {
        Some(k) => (format!("（由 {k} 跟进）"), format!(" (followed up by {k})")),
        None => (String::new(), String::new()),
    };
    format!(
        "线索 #{lead} 与线索 #{into}{zh} 是同一人，已合并，请停止跟进 · \
         Lead #{lead} is the same person as lead #{into}{en}: merged, stop following up"
    )
}

/// For the owner of lead `lead`, split back out of `from` (the merge was undone).
pub fn split(lead: i64, from: i64) -> String {
    format!(
        "线索 #{lead} 已从线索 #{from} 拆分回来，请继续跟进 · \
         Lead #{lead} was split back out of lead #{from}: yours to follow up again"
    )
}

/// For a team's lead agent: `owner` has not contacted lead `lead`, due at `due`.
pub fn overdue(lead: i64, owner: &str, due: Millis) -> String {
    let due = siyu_domain::time::format_rfc3339(due);
    format!(
        "线索 #{lead}（{owner}）首次联系已超时，应于 {due} 前联系 · \
         Lead #{lead} ({owner}): first contact overdue, due {due}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_the_leads_and_people_in_both_languages() {
        let m = merged(12, 7, Some("amy"));
        assert!(m.contains("#12") && m.contains("#7") && m.contains("amy"));
        assert!(m.contains("已合并") && m.contains("stop following up"));
        assert!(!merged(12, 7, None).contains("followed up by"));
        let s = split(12, 7);
        assert!(s.contains("#12") && s.contains("#7") && s.contains("拆分"));
        let o = overdue(3, "bob", 0);
        assert!(o.contains("#3") && o.contains("bob") && o.contains("1970-01-01T00:00:00"));
    }
}
