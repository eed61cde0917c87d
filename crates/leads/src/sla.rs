//! Service levels: when a lead's first contact is due, when it is overdue and what that does,
//! and when a lead nobody follows up goes back to the pool (回收).

use siyu_domain::Millis;

use crate::LeadError;

/// What an overdue first contact does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Escalate {
    /// Hand the lead to the next agent who can take it (routing again, without the owner).
    #[default]
    Reassign,
    /// A task for the team's lead agent; the owner keeps the lead.
    Task,
}

impl Escalate {
    pub fn as_str(self) -> &'static str {
        match self {
            Escalate::Reassign => "reassign",
            Escalate::Task => "task",
        }
    }

    pub fn parse(s: &str) -> Result<Escalate, LeadError> {
        match s {
            "reassign" => Ok(Escalate::Reassign),
            "task" => Ok(Escalate::Task),
            _ => Err(LeadError::new(
                "escalate",
                "invalid_escalation",
                format!("\"{s}\" is not an escalation; expected reassign or task"),
            )),
        }
    }
}

/// A lead's service-level facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    pub assigned_at: Option<Millis>,
    pub first_contact_due: Option<Millis>,
    pub first_contact_at: Option<Millis>,
    pub last_follow_up_at: Option<Millis>,
    pub escalated_at: Option<Millis>,
}

/// What a lead's service level asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing; look again at this instant (the next deadline), if any.
    Fine(Option<Millis>),
    /// First contact is overdue and not yet escalated.
    Overdue { since: Millis },
    /// Nobody followed it up for the recycle period: back to the pool.
    Recycle { idle_since: Millis },
}

/// The first contact's deadline for a lead assigned at `at`.
pub fn first_contact_due(at: Millis, first_contact_ms: Option<i64>) -> Option<Millis> {
    first_contact_ms.map(|d| at.saturating_add(d))
}

/// What an owned, open lead's service level asks for at `now`. Recycling wins over an
/// escalation (a lead nobody touched for days goes back whole).
pub fn check(c: &Clock, recycle_ms: Option<i64>, now: Millis) -> Due {
    let Some(assigned) = c.assigned_at else {
        return Due::Fine(None);
    };
    let idle_since = c.last_follow_up_at.unwrap_or(assigned).max(assigned);
    let recycle_at = recycle_ms.map(|d| idle_since.saturating_add(d));
    if recycle_at.is_some_and(|t| now >= t) {
        return Due::Recycle { idle_since };
    }
    let overdue_at = match (c.first_contact_due, c.first_contact_at, c.escalated_at) {
        (Some(due), None, None) => Some(due),
        _ => None,
    };
    if let Some(due) = overdue_at
        && now >= due
    {
        return Due::Overdue { since: due };
    }
    let next = [overdue_at, recycle_at].into_iter().flatten().min();
    Due::Fine(next)
}

/// Whether a first contact was made in time (`None` while not due or not made).
pub fn in_time(c: &Clock) -> Option<bool> {
    Some(c.first_contact_at? <= c.first_contact_due?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escalations_read_back_what_they_write() {
        for e in [Escalate::Reassign, Escalate::Task] {
            assert_eq!(Escalate::parse(e.as_str()), Ok(e));
        }
        assert_eq!(Escalate::Task.as_str(), "task");
        assert_eq!(Escalate::parse("email").unwrap_err().field, "escalate");
    }

    use super::*;

    const H: Millis = 3_600_000;

    fn assigned(at: Millis, due: Option<Millis>) -> Clock {
        Clock {
            assigned_at: Some(at),
            first_contact_due: due,
            ..Clock::default()
        }
    }

    #[test]
    fn overdue_once_and_only_before_contact() {
        let c = assigned(0, first_contact_due(0, Some(2 * H)));
        assert_eq!(check(&c, None, H), Due::Fine(Some(2 * H)));
        assert_eq!(check(&c, None, 2 * H), Due::Overdue { since: 2 * H });
        let escalated = Clock {
            escalated_at: Some(2 * H),
            ..c
        };
        assert_eq!(check(&escalated, None, 5 * H), Due::Fine(None));
        let contacted = Clock {
            first_contact_at: Some(H),
            last_follow_up_at: Some(H),
            ..c
        };
        assert_eq!(check(&contacted, None, 5 * H), Due::Fine(None));
        assert_eq!(in_time(&contacted), Some(true));
        assert_eq!(in_time(&c), None);
    }

    #[test]
    fn an_untouched_lead_goes_back_to_the_pool() {
        let day = 24 * H;
        let c = assigned(0, None);
        assert_eq!(
            check(&c, Some(3 * day), 3 * day - 1),
            Due::Fine(Some(3 * day))
        );
        assert_eq!(
            check(&c, Some(3 * day), 3 * day),
            Due::Recycle { idle_since: 0 }
        );
        let followed = Clock {
            last_follow_up_at: Some(2 * day),
            ..c
        };
        assert_eq!(
            check(&followed, Some(3 * day), 4 * day),
            Due::Fine(Some(5 * day))
        );
        // Recycling wins over an escalation due at the same time.
        let both = assigned(0, Some(day));
        assert_eq!(check(&both, Some(day), day), Due::Recycle { idle_since: 0 });
        assert_eq!(check(&Clock::default(), Some(1), 10), Due::Fine(None));
    }

    #[test]
    fn escalations_parse() {
        assert_eq!(Escalate::parse("task"), Ok(Escalate::Task));
        assert_eq!(Escalate::parse("reassign"), Ok(Escalate::Reassign));
        assert_eq!(Escalate::parse("email").unwrap_err().field, "escalate");
    }
}
