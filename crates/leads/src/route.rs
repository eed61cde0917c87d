//! Which agent of a team gets a lead.
//!
//! Only an agent who is **active**, **inside their working hours**, **under their capacity**
//! (open leads) and **under their daily cap** (leads given today, in the tenant's time zone)
//! can receive one; the others are passed over with the reason ([`Pass`]), and when nobody
//! can, the lead waits in the team's pool (公海) — it is never dropped. Among those who can:
//!
//! - `round_robin`: the next one after the last agent given a lead, in name order;
//! - `least_loaded`: the lowest open leads / capacity (an agent without a capacity counts as
//!   having room for a million), ties taken in round-robin order;
//! - `weighted`: the lowest (leads today + 1) / weight, so a day's shares follow the weights,
//!   ties in round-robin order.
//!
//! A [`Team`] keeps the counters it decides on and updates them with each assignment, so a
//! batch of leads is routed without reading anything back.

use std::collections::HashMap;

use crate::LeadError;
use crate::hours::{DAY, Hours};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    #[default]
    RoundRobin,
    LeastLoaded,
    Weighted,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [
        Strategy::RoundRobin,
        Strategy::LeastLoaded,
        Strategy::Weighted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastLoaded => "least_loaded",
            Strategy::Weighted => "weighted",
        }
    }

    pub fn parse(s: &str) -> Result<Strategy, LeadError> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                LeadError::new(
                    "strategy",
                    "invalid_strategy",
                    format!(
                        "\"{s}\" is not a strategy; expected round_robin, least_loaded or weighted"
                    ),
                )
            })
    }
}

/// Why an agent did not get a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pass {
    Inactive,
    OffHours,
    AtCapacity,
    DailyCap,
}

impl Pass {
    pub fn as_str(self) -> &'static str {
        match self {
            Pass::Inactive => "inactive",
            Pass::OffHours => "off_hours",
            Pass::AtCapacity => "at_capacity",
            Pass::DailyCap => "daily_cap",
        }
    }
}

/// An agent as routing sees them: their limits and their counters now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Agent {
    pub name: String,
    pub active: bool,
    /// Open leads at most.
    pub capacity: Option<i32>,
    /// Leads given per local day at most.
    pub daily_cap: Option<i32>,
    pub hours: Option<Hours>,
    /// 1 and up.
    pub weight: i32,
    /// Open leads they own now.
    pub open: i64,
    /// Leads given to them today.
    pub today: i64,
}

impl Agent {
    /// Why they cannot receive a lead at this local minute, if they cannot.
    pub fn pass(&self, minute: u16) -> Option<Pass> {
        if !self.active {
            Some(Pass::Inactive)
        } else if self.hours.is_some_and(|h| !h.contains(minute)) {
            Some(Pass::OffHours)
        } else if self.capacity.is_some_and(|c| self.open >= i64::from(c)) {
            Some(Pass::AtCapacity)
        } else if self.daily_cap.is_some_and(|c| self.today >= i64::from(c)) {
            Some(Pass::DailyCap)
        } else {
            None
        }
    }

    /// Why they cannot claim a lead from the pool, if they cannot: claiming is their own
    /// choice, so only being inactive or at the daily cap stops it.
    pub fn pass_claim(&self) -> Option<Pass> {
        if !self.active {
            Some(Pass::Inactive)
        } else if self.daily_cap.is_some_and(|c| self.today >= i64::from(c)) {
            Some(Pass::DailyCap)
        } else {
            None
        }
    }

    /// Open leads over capacity.
    fn load(&self) -> f64 {
        self.open as f64 / f64::from(self.capacity.unwrap_or(1_000_000).max(1))
    }
}

/// A team's agents and its round-robin pointer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Team {
    pub name: String,
    pub strategy: Strategy,
    /// In name order.
    pub agents: Vec<Agent>,
    /// The agent last given a lead.
    pub last: Option<String>,
}

/// What became of one lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// To this agent (an index into the team's agents).
    Agent(usize),
    /// Into the pool: every agent was passed over, for these reasons (in agent order).
    Pool(Vec<(String, Pass)>),
}

impl Team {
    pub fn new(name: &str, strategy: Strategy, mut agents: Vec<Agent>) -> Team {
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        Team {
            name: name.to_string(),
            strategy,
            agents,
            last: None,
        }
    }

    /// The agents in round-robin order: those after the last one given a lead (by name, so
    /// a pointer at an agent since removed goes on with the next name), then the rest.
    fn rotation(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.agents.len();
        let start = self.last.as_ref().map_or(0, |l| {
            self.agents.iter().position(|a| a.name > *l).unwrap_or(0)
        });
        (0..n).map(move |k| (start + k) % n)
    }

    /// Gives one lead at a local minute of the day: the chosen agent's counters and the
    /// pointer move; nothing changes when it goes to the pool.
    pub fn assign(&mut self, minute: u16) -> Assigned {
        let order: Vec<usize> = self.rotation().collect();
        let eligible = order
            .iter()
            .copied()
            .filter(|&i| self.agents[i].pass(minute).is_none());
        let chosen = match self.strategy {
            Strategy::RoundRobin => eligible.min_by_key(|_| 0),
            Strategy::LeastLoaded => {
                eligible.min_by(|&a, &b| self.agents[a].load().total_cmp(&self.agents[b].load()))
            }
            Strategy::Weighted => eligible.min_by(|&a, &b| {
                let share = |i: usize| {
                    let g = &self.agents[i];
                    (g.today + 1) as f64 / f64::from(g.weight.max(1))
                };
                share(a).total_cmp(&share(b))
            }),
        };
        match chosen {
            Some(i) => {
                let a = &mut self.agents[i];
                a.open += 1;
                a.today += 1;
                self.last = Some(a.name.clone());
                Assigned::Agent(i)
            }
            None => Assigned::Pool(
                order
                    .iter()
                    .filter_map(|&i| {
                        let a = &self.agents[i];
                        a.pass(minute).map(|p| (a.name.clone(), p))
                    })
                    .collect(),
            ),
        }
    }

    /// An agent's index by name.
    pub fn agent(&self, name: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.name == name)
    }

    /// Minutes from a local minute until someone could next receive a lead by the clock alone
    /// (their hours begin, or a new day resets a daily cap); `None` when only a lead closing
    /// or an agent's change can make room.
    pub fn until_someone(&self, minute: u16) -> Option<u16> {
        self.agents
            .iter()
            .filter(|a| a.active && a.capacity.is_none_or(|c| a.open < i64::from(c)))
            .map(|a| {
                let opens = a.hours.map_or(0, |h| h.until_open(minute));
                if a.daily_cap.is_some_and(|c| a.today >= i64::from(c)) {
                    // Tomorrow, once their hours begin.
                    let midnight = DAY - minute;
                    midnight + a.hours.map_or(0, |h| h.until_open(0))
                } else {
                    opens
                }
            })
            .min()
    }
}

/// Every team, by name.
#[derive(Debug, Clone, Default)]
pub struct Router {
    pub teams: HashMap<String, Team>,
}

impl Router {
    pub fn add(&mut self, team: Team) {
        self.teams.insert(team.name.clone(), team);
    }

    /// Gives one lead to a team (see [`Team::assign`]); `None` for an unknown team.
    pub fn assign(&mut self, team: &str, minute: u16) -> Option<(Assigned, &Team)> {
        let t = self.teams.get_mut(team)?;
        let a = t.assign(minute);
        Some((a, t))
    }

    /// A lead the agent no longer owns (closed, returned to the pool, handed on).
    pub fn released(&mut self, team: &str, agent: &str) {
        if let Some(a) = self
            .teams
            .get_mut(team)
            .and_then(|t| t.agents.iter_mut().find(|a| a.name == agent))
        {
            a.open = (a.open - 1).max(0);
        }
    }
}

/// The fairness of a day's assignments under `round_robin`: the most leads any eligible
/// agent got over the fewest (1.0 is perfectly even).
pub fn fairness(counts: &[i64]) -> f64 {
    let max = counts.iter().copied().max().unwrap_or(0);
    let min = counts.iter().copied().min().unwrap_or(0);
    if min == 0 {
        if max == 0 { 1.0 } else { f64::INFINITY }
    } else {
        max as f64 / min as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str) -> Agent {
        Agent {
            name: name.into(),
            active: true,
            weight: 1,
            ..Agent::default()
        }
    }

    const NOON: u16 = 12 * 60;

    fn names(t: &mut Team, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| match t.assign(NOON) {
                Assigned::Agent(i) => t.agents[i].name.clone(),
                Assigned::Pool(_) => "pool".into(),
            })
            .collect()
    }

    #[test]
    fn reasons_agents_and_routers_answer_by_name() {
        let codes: Vec<&str> = [
            Pass::Inactive,
            Pass::OffHours,
            Pass::AtCapacity,
            Pass::DailyCap,
        ]
        .into_iter()
        .map(Pass::as_str)
        .collect();
        assert_eq!(codes, ["inactive", "off_hours", "at_capacity", "daily_cap"]);
        let t = Team::new("tmk", Strategy::RoundRobin, vec![agent("a"), agent("b")]);
        assert_eq!(
            (t.agent("a"), t.agent("b"), t.agent("z")),
            (Some(0), Some(1), None)
        );
        let mut r = Router::default();
        r.add(t);
        assert!(r.assign("nobody", NOON).is_none());
        let (got, team) = r.assign("tmk", NOON).unwrap();
        assert_eq!(got, Assigned::Agent(0));
        assert_eq!(team.agents[0].open, 1);
        r.released("tmk", "a");
        r.released("tmk", "a");
        assert_eq!(r.teams["tmk"].agents[0].open, 0, "never below zero");
    }

    #[test]
    fn fairness_is_the_most_over_the_fewest() {
        assert_eq!(fairness(&[6, 4, 5]), 1.5);
        assert_eq!(fairness(&[3, 3]), 1.0);
        assert_eq!(fairness(&[]), 1.0);
        assert_eq!(fairness(&[0, 2]), f64::INFINITY);
    }

    #[test]
    fn the_pool_waits_until_the_first_agent_can_take_a_lead() {
        let mut day = agent("day");
        day.hours = Some(Hours::parse("09:00-21:00").unwrap());
        let mut full = agent("full");
        full.capacity = Some(1);
        full.open = 1;
        let t = Team::new("tmk", Strategy::RoundRobin, vec![day.clone(), full]);
        // At 08:00, an hour; at capacity counts for nothing by the clock.
        assert_eq!(t.until_someone(8 * 60), Some(60));
        // Under capacity by one: they count.
        let mut room = agent("room");
        room.capacity = Some(2);
        room.open = 1;
        room.hours = Some(Hours::parse("10:00-11:00").unwrap());
        let t = Team::new("tmk", Strategy::RoundRobin, vec![room]);
        assert_eq!(t.until_someone(8 * 60), Some(120));
        // Daily cap reached exactly: tomorrow, once the hours begin.
        let mut capped = day;
        capped.daily_cap = Some(2);
        capped.today = 2;
        let t = Team::new("tmk", Strategy::RoundRobin, vec![capped]);
        assert_eq!(t.until_someone(22 * 60), Some(2 * 60 + 9 * 60));
        let mut all_day = agent("all_day");
        all_day.daily_cap = Some(1);
        all_day.today = 1;
        let t = Team::new("tmk", Strategy::RoundRobin, vec![all_day]);
        assert_eq!(t.until_someone(22 * 60), Some(2 * 60), "at midnight");
    }

    #[test]
    fn weighted_starts_with_the_heaviest() {
        let mut heavy = agent("b");
        heavy.weight = 3;
        let mut t = Team::new("s", Strategy::Weighted, vec![agent("a"), heavy]);
        assert_eq!(names(&mut t, 1), ["b"]);
    }

    #[test]
    fn round_robin_takes_turns_from_the_pointer() {
        let mut t = Team::new(
            "tmk",
            Strategy::RoundRobin,
            vec![agent("c"), agent("a"), agent("b")],
        );
        assert_eq!(names(&mut t, 4), ["a", "b", "c", "a"]);
        // A pointer at an agent since removed continues with the next name.
        t.last = Some("bb".into());
        assert_eq!(names(&mut t, 2), ["c", "a"]);
    }

    #[test]
    fn every_limit_passes_an_agent_over_with_its_reason() {
        let mut off = agent("b");
        off.hours = Some(Hours::parse("09:00-11:00").unwrap());
        let mut full = agent("c");
        full.capacity = Some(2);
        full.open = 2;
        let mut capped = agent("d");
        capped.daily_cap = Some(1);
        capped.today = 1;
        let mut inactive = agent("a");
        inactive.active = false;
        let mut t = Team::new(
            "sales",
            Strategy::RoundRobin,
            vec![inactive, off, full, capped, agent("e")],
        );
        assert_eq!(names(&mut t, 2), ["e", "e"]);
        t.agents.retain(|a| a.name != "e");
        assert_eq!(
            t.assign(NOON),
            Assigned::Pool(vec![
                ("a".into(), Pass::Inactive),
                ("b".into(), Pass::OffHours),
                ("c".into(), Pass::AtCapacity),
                ("d".into(), Pass::DailyCap),
            ])
        );
        // At 09:00 the morning agent is in.
        assert_eq!(t.assign(9 * 60), Assigned::Agent(1));
    }

    #[test]
    fn least_loaded_fills_by_share_of_capacity() {
        let mut a = agent("a");
        a.capacity = Some(10);
        a.open = 5;
        let mut b = agent("b");
        b.capacity = Some(4);
        b.open = 1;
        let mut t = Team::new("s", Strategy::LeastLoaded, vec![a, b]);
        // b: 1/4 < a: 5/10; then b 2/4 ties a 5/10 → rotation after b → a.
        assert_eq!(names(&mut t, 3), ["b", "a", "b"]);
    }

    #[test]
    fn weighted_follows_the_weights_over_a_day() {
        let mut a = agent("a");
        a.weight = 3;
        let mut t = Team::new("s", Strategy::Weighted, vec![a, agent("b")]);
        let got = names(&mut t, 400);
        let a = got.iter().filter(|n| *n == "a").count();
        assert_eq!(a, 300);
    }

    #[test]
    fn round_robin_is_fair_to_the_lead() {
        let mut t = Team::new(
            "s",
            Strategy::RoundRobin,
            (0..7).map(|i| agent(&format!("g{i}"))).collect(),
        );
        names(&mut t, 7 * 100 + 3);
        let counts: Vec<i64> = t.agents.iter().map(|a| a.today).collect();
        assert!(fairness(&counts) <= 101.0 / 100.0);
        assert_eq!(fairness(&[0, 0]), 1.0);
        assert!(fairness(&[3, 0]).is_infinite());
    }

    #[test]
    fn the_pool_knows_when_someone_is_next_in() {
        let mut morning = agent("a");
        morning.hours = Some(Hours::parse("09:00-18:00").unwrap());
        let mut capped = agent("b");
        capped.daily_cap = Some(1);
        capped.today = 1;
        capped.hours = Some(Hours::parse("10:00-18:00").unwrap());
        let t = Team::new("s", Strategy::RoundRobin, vec![morning, capped]);
        assert_eq!(t.until_someone(22 * 60), Some(11 * 60));
        let t = Team::new("s", Strategy::RoundRobin, vec![t.agents[1].clone()]);
        // Capped today: tomorrow at 10:00.
        assert_eq!(t.until_someone(22 * 60), Some(2 * 60 + 10 * 60));
        let mut full = agent("c");
        full.capacity = Some(0);
        let t = Team::new("s", Strategy::RoundRobin, vec![full]);
        assert_eq!(t.until_someone(0), None);
    }

    #[test]
    fn claims_and_releases() {
        let mut g = agent("a");
        g.capacity = Some(1);
        g.open = 1;
        assert_eq!(g.pass(NOON), Some(Pass::AtCapacity));
        assert_eq!(g.pass_claim(), None, "a claim is the agent's own choice");
        g.daily_cap = Some(0);
        assert_eq!(g.pass_claim(), Some(Pass::DailyCap));
        let mut r = Router::default();
        r.add(Team::new("s", Strategy::RoundRobin, vec![g]));
        r.released("s", "a");
        r.released("s", "a");
        assert_eq!(r.teams["s"].agents[0].open, 0);
        assert!(r.assign("nope", NOON).is_none());
        assert_eq!(
            Strategy::parse("fair").unwrap_err().code,
            "invalid_strategy"
        );
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.as_str()), Ok(s));
        }
    }
}
