//! Which fan group (粉丝群) a fan is invited to: groups of one template fill in the order they
//! were opened, and when every one is full the next is opened from the template — so no
//! group ever holds more than its capacity (WeCom and Douyin fan groups cap at 500).

/// The default capacity of a group.
pub const CAPACITY: i32 = 500;

/// A group as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: i64,
    pub template: String,
    pub capacity: i32,
    pub members: i32,
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
/// templates' groups are ignored).
pub fn place(groups: &[Group], template: &str) -> Place {
    let mut count = 0;
    for (i, g) in groups.iter().enumerate() {
        if g.template != template {
            continue;
        }
        count += 1;
        if g.members < g.capacity {
            return Place::Existing(i);
        }
    }
    Place::Open {
        name: name_of(template, count + 1),
        n: count + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(id: i64, template: &str, capacity: i32, members: i32) -> Group {
        Group {
            id,
            template: template.into(),
            capacity,
            members,
        }
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
