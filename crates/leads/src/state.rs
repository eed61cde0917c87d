//! A lead's states and the follow-ups logged on it.
//!
//! `new → contacted → qualified → won | lost`, and `invalid` (a wrong number, a test entry)
//! from any open state. A lead may be lost at any open stage (the person said no on the first
//! call); it is won only once qualified. Closed states are final: the same person coming back
//! later is a new lead, with their history on the fan. `merged` is Siyu's own: the newer of two
//! open leads whose fans turned out to be one person; no one moves a lead there, and undoing
//! the merge brings it back to the state it had.

use crate::LeadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeadState {
    New,
    Contacted,
    Qualified,
    Won,
    Lost,
    Invalid,
    Merged,
}

impl LeadState {
    pub const ALL: [LeadState; 7] = [
        LeadState::New,
        LeadState::Contacted,
        LeadState::Qualified,
        LeadState::Won,
        LeadState::Lost,
        LeadState::Invalid,
        LeadState::Merged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeadState::New => "new",
            LeadState::Contacted => "contacted",
            LeadState::Qualified => "qualified",
            LeadState::Won => "won",
            LeadState::Lost => "lost",
            LeadState::Invalid => "invalid",
            LeadState::Merged => "merged",
        }
    }

    /// The Chinese label operators read (one table with [`Self::as_str`]).
    pub fn label_zh(self) -> &'static str {
        match self {
            LeadState::New => "新线索",
            LeadState::Contacted => "已联系",
            LeadState::Qualified => "已确认意向",
            LeadState::Won => "已成交",
            LeadState::Lost => "已流失",
            LeadState::Invalid => "无效",
            LeadState::Merged => "已合并",
        }
    }

    pub fn parse(s: &str) -> Result<LeadState, LeadError> {
        LeadState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                LeadError::new(
                    "state",
                    "invalid_state",
                    format!(
                        "\"{s}\" is not a lead state; expected one of {}",
                        LeadState::ALL.map(|st| st.as_str()).join(", ")
                    ),
                )
            })
    }

    /// Whether the lead is still being worked (not won, lost or invalid).
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            LeadState::Won | LeadState::Lost | LeadState::Invalid | LeadState::Merged
        )
    }

    /// The states a lead in this one may go to.
    pub fn next(self) -> &'static [LeadState] {
        use LeadState::*;
        match self {
            New => &[Contacted, Lost, Invalid],
            Contacted => &[Qualified, Lost, Invalid],
            Qualified => &[Won, Lost, Invalid],
            Won | Lost | Invalid | Merged => &[],
        }
    }

    /// Checks a change; the refusal says which changes are allowed from here.
    pub fn change_to(self, to: LeadState) -> Result<LeadState, LeadError> {
        if self.next().contains(&to) {
            return Ok(to);
        }
        let allowed = self.next().iter().map(|s| s.as_str()).collect::<Vec<_>>();
        Err(LeadError::new(
            "state",
            "state_not_allowed",
            if allowed.is_empty() {
                format!(
                    "a {} lead is closed; it cannot become {}",
                    self.as_str(),
                    to.as_str()
                )
            } else {
                format!(
                    "a {} lead can become {}, not {}",
                    self.as_str(),
                    allowed.join(" or "),
                    to.as_str()
                )
            },
        ))
    }
}

/// What an agent logs on a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FollowUp {
    Call,
    Message,
    Visit,
    Note,
}

impl FollowUp {
    pub const ALL: [FollowUp; 4] = [
        FollowUp::Call,
        FollowUp::Message,
        FollowUp::Visit,
        FollowUp::Note,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FollowUp::Call => "call",
            FollowUp::Message => "message",
            FollowUp::Visit => "visit",
            FollowUp::Note => "note",
        }
    }

    pub fn parse(s: &str) -> Result<FollowUp, LeadError> {
        FollowUp::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                LeadError::new(
                    "kind",
                    "invalid_follow_up",
                    format!("\"{s}\" is not a follow-up; expected call, message, visit or note"),
                )
            })
    }

    /// Whether logging it counts as contacting the person (a note does not).
    pub fn contacts(self) -> bool {
        !matches!(self, FollowUp::Note)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_state_has_its_own_chinese_label() {
        let labels: std::collections::HashSet<&str> =
            LeadState::ALL.iter().map(|s| s.label_zh()).collect();
        assert_eq!(labels.len(), LeadState::ALL.len());
        assert_eq!(LeadState::New.label_zh(), "新线索");
        assert_eq!(LeadState::Merged.label_zh(), "已合并");
    }

    use super::*;
    use LeadState::*;

    #[test]
    fn the_path_and_its_exits() {
        assert_eq!(New.change_to(Contacted), Ok(Contacted));
        assert_eq!(Contacted.change_to(Qualified), Ok(Qualified));
        assert_eq!(Qualified.change_to(Won), Ok(Won));
        for s in [New, Contacted, Qualified] {
            assert_eq!(s.change_to(Lost), Ok(Lost));
            assert_eq!(s.change_to(Invalid), Ok(Invalid));
            assert!(s.is_open());
        }
        for s in [Won, Lost, Invalid, Merged] {
            assert!(!s.is_open());
            assert!(s.next().is_empty());
        }
        // Nobody moves a lead to merged: Siyu does, when two fans are one person.
        for s in [New, Contacted, Qualified] {
            assert_eq!(s.change_to(Merged).unwrap_err().code, "state_not_allowed");
        }
    }

    #[test]
    fn a_change_outside_the_order_names_what_is_allowed() {
        let e = New.change_to(Won).unwrap_err();
        assert_eq!((e.field, e.code), ("state", "state_not_allowed"));
        assert_eq!(
            e.message,
            "a new lead can become contacted or lost or invalid, not won"
        );
        let e = Won.change_to(Contacted).unwrap_err();
        assert_eq!(
            e.message,
            "a won lead is closed; it cannot become contacted"
        );
        assert_eq!(New.change_to(New).unwrap_err().code, "state_not_allowed");
        assert_eq!(
            Contacted.change_to(New).unwrap_err().code,
            "state_not_allowed"
        );
    }

    #[test]
    fn states_and_follow_ups_parse_what_they_print() {
        for s in LeadState::ALL {
            assert_eq!(LeadState::parse(s.as_str()), Ok(s));
            assert!(!s.label_zh().is_empty());
        }
        assert_eq!(LeadState::parse("done").unwrap_err().code, "invalid_state");
        for k in FollowUp::ALL {
            assert_eq!(FollowUp::parse(k.as_str()), Ok(k));
        }
        assert_eq!(FollowUp::parse("email").unwrap_err().field, "kind");
        assert!(FollowUp::Call.contacts() && !FollowUp::Note.contacts());
    }
}
