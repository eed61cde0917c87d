//! Which fan group (粉丝群) a fan is invited to: groups of one template fill in the order they
//! were opened, and when every one is full the next is opened from the template — so no
//! group ever holds more than its capacity (WeCom and Douyin fan groups cap at 500).
//!
//! A seat is taken by a member and by an invitation out: a fan invited holds a seat for
//! [`HOLD_MS`] or until they join. Without it a burst of invitations (a journey's broadcast
//! to 2,000 fans) would all go to the one group with room, and most joins would then fail
//! against the platform's cap.

use siyu_domain::Millis;

/// The default capacity of a group.
pub const CAPACITY: i32 = 500;

/// How long an invitation holds its seat: three days, the life of a Douyin group invitation
/// card and about as long as fans take to answer one.
pub const HOLD_MS: Millis = 3 * 86_400_000;

/// A group as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub template: String,
    pub capacity: i32,
    pub members: i32,
    /// Seats held by invitations out.
    pub held: i32,
}

impl Group {
    /// Whether one more fan fits.
    pub fn has_room(&self) -> bool {
        self.members.saturating_add(self.held) < self.capacity
    }
}

/// Where a fan goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Into this group (an index of the slice given), which has room.
    Existing(usize),
    /// Into a new group of the template, with this name (the template's `n`th group).
    Open { name: String, n: usize },
}

/// The name of a template's `n`th group (1 first): `品牌粉丝群` → `品牌粉丝群 1`, `… 2`, ….
pub fn name_of(template: &str, n: usize) -> String {
    format!("{template} {n}")
}

/// Places one fan in a template's groups (`groups` in the order they were opened; other
/// templates' groups are ignored but for their names: a new group never takes a name in use).
pub fn place(groups: &[Group], template: &str) -> Place {
    let mut count = 0;
    for (i, g) in groups.iter().enumerate() {
        if g.template != template {
            continue;
        }
        count += 1;
        if g.has_room() {
            return Place::Existing(i);
        }
    }
    let mut n = count + 1;
    while groups.iter().any(|g| g.name == name_of(template, n)) {
        n += 1;
    }
    Place::Open {
        name: name_of(template, n),
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(id: i64, template: &str, capacity: i32, members: i32) -> Group {
        Group {
            id,
            name: format!("{template}#{id}"),
            template: template.into(),
            capacity,
            members,
            held: 0,
        }
    }

    #[test]
    fn an_invitation_holds_its_seat_three_days() {
        assert_eq!(HOLD_MS, 259_200_000);
    }

    #[test]
    fn invitations_out_hold_seats_and_names_are_never_reused() {
        let mut a = g(1, "vip", 3, 1);
        a.held = 2;
        assert!(!a.has_room());
        assert_eq!(
            place(std::slice::from_ref(&a), "vip"),
            Place::Open {
                name: "vip 2".into(),
                n: 2
            }
        );
        a.held = 1;
        assert_eq!(place(std::slice::from_ref(&a), "vip"), Place::Existing(0));
        // "vip 2" is taken (by a group of another template): the next is "vip 3".
        let mut full = g(1, "vip", 1, 1);
        full.name = "vip 1".into();
        let mut other = g(2, "external", 500, 0);
        other.name = "vip 2".into();
        assert_eq!(
            place(&[full, other], "vip"),
            Place::Open {
                name: "vip 3".into(),
                n: 3
            }
        );
    }

    #[test]
    fn fills_in_order_then_opens_the_next() {
        let gs = [g(1, "vip", 2, 2), g(2, "other", 5, 0), g(3, "vip", 2, 1)];
        assert_eq!(place(&gs, "vip"), Place::Existing(2));
        let full = [g(1, "vip", 2, 2), g(3, "vip", 2, 2)];
        assert_eq!(
            place(&full, "vip"),
            Place::Open {
                name: "vip 3".into(),
                n: 3
            }
        );
        assert_eq!(
            place(&[], "新客群"),
            Place::Open {
                name: "新客群 1".into(),
                n: 1
            }
        );
    }

    #[test]
    fn a_thousand_fans_never_overflow_a_group() {
        let mut gs: Vec<Group> = Vec::new();
        for _ in 0..1001 {
            match place(&gs, "t") {
                Place::Existing(i) => gs[i].members += 1,
                Place::Open { .. } => gs.push(g(gs.len() as i64 + 1, "t", CAPACITY, 1)),
            }
        }
        assert_eq!(
            gs.iter().map(|g| g.members).collect::<Vec<_>>(),
            [500, 500, 1]
        );
    }
}
