//! The lead worker driven step by step on a SQLite store with a live engine and one manual
//! clock: the issue's "done when" as a new user would try it.

use std::sync::Arc;

use serde_json::{Value, json};
use siyu_domain::time::{Clock, ManualClock};
use siyu_store::leads::LeadFilter;
use siyu_store::{Durability, SqliteStore, Store, TenantId};

use super::worker::LeadWorker;
use super::{AgentSpec, TeamSpec};
use crate::targets::TargetPolicy;
use crate::{App, EngineMode, Safeguards};

/// 2026-12-01T10:00:00+08:00 (Asia/Shanghai, the default time zone).
const T0: i64 = 1_796_090_400_000;
const H: i64 = 3_600_000;

struct Harness {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    app: Arc<App>,
    tenant: TenantId,
    worker: LeadWorker,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
        let name = crate::TenantName::parse("acme").unwrap();
        crate::tenants::create(&*store, &name).unwrap();
        let tenant = store.tenants().unwrap()[0].id;
        let clock = Arc::new(ManualClock::new(T0));
        let guard = Safeguards::new(
            crate::secrets::Sealer::from_keys(&[7; 32], None),
            TargetPolicy::ALLOW_PRIVATE,
        );
        let app = Arc::new(App::start_with(store, EngineMode::Live, clock.clone(), guard).unwrap());
        let worker = LeadWorker::new(app.clone());
        Harness {
            _dir: dir,
            clock,
            app,
            tenant,
            worker,
        }
    }

    fn events(&self, events: Vec<Value>) {
        let now = self.clock.now();
        let parsed: Vec<siyu_domain::Event> = events
            .into_iter()
            .map(|v| siyu_domain::Event::from_value(v, self.app.time_bounds(now)).unwrap())
            .collect();
        let rx = self.app.ingestor.submit(self.tenant, parsed).unwrap();
        rx.blocking_recv().unwrap().unwrap();
    }

    fn step(&mut self) -> super::worker::LeadReport {
        self.worker.step(self.clock.now()).unwrap()
    }

    fn team(&self, name: &str, first_contact: Option<&str>) {
        self.app
            .put_team(
                self.tenant,
                &TeamSpec {
                    name: name.into(),
                    first_contact: first_contact.map(str::to_string),
                    ..TeamSpec::default()
                },
            )
            .unwrap();
    }

    fn agent(&self, name: &str, team: &str, capacity: Option<i64>, hours: Option<&str>) {
        self.app
            .put_agent(
                self.tenant,
                &AgentSpec {
                    name: name.into(),
                    team: Some(team.into()),
                    capacity,
                    hours: hours.map(str::to_string),
                    ..AgentSpec::default()
                },
            )
            .unwrap();
    }

    fn leads(&self) -> Vec<siyu_store::leads::StoredLead> {
        self.app
            .leads(
                self.tenant,
                &LeadFilter {
                    limit: 1000,
                    ..LeadFilter::default()
                },
            )
            .unwrap()
    }

    /// The inbox: every task (the journeys' and the leads'), by id.
    fn tasks(&self) -> Vec<siyu_store::journeys::StoredTask> {
        let mut t = self
            .app
            .store()
            .tasks(
                self.tenant,
                &siyu_store::journeys::TaskFilter {
                    limit: 100,
                    ..Default::default()
                },
            )
            .unwrap();
        t.sort_by_key(|t| t.id);
        t
    }

    fn log_kinds(&self, lead: i64) -> Vec<String> {
        self.app
            .store()
            .lead_log(self.tenant, lead)
            .unwrap()
            .into_iter()
            .map(|l| l.kind)
            .collect()
    }
}

fn form(id: &str, ids: Value, channel: &str, ts: i64) -> Value {
    json!({"id": id, "type": "lead_form", "ts": siyu_domain::time::format_rfc3339(ts),
           "identities": ids, "props": {"channel": channel, "province": "浙江", "city": "杭州"}})
}

#[test]
fn one_person_three_forms_three_channels_is_one_lead_with_one_owner() {
    let mut h = Harness::new();
    h.team("tmk", Some("2h"));
    h.agent("小王", "tmk", None, None);
    h.agent("小李", "tmk", None, None);
    h.events(vec![form(
        "f1",
        json!({"douyin_open_id": "oA", "phone": "13800138000"}),
        "live",
        T0 - 3000,
    )]);
    let r = h.step();
    assert_eq!((r.new_leads, r.assigned, r.repeats), (1, 1, 0));
    h.events(vec![
        form("f2", json!({"phone": "13800138000"}), "ad", T0 - 2000),
        form(
            "f3",
            json!({"douyin_open_id": "oA"}),
            "private_message",
            T0 - 1000,
        ),
    ]);
    let r = h.step();
    assert_eq!((r.new_leads, r.assigned, r.repeats), (0, 0, 2));
    let leads = h.leads();
    assert_eq!(leads.len(), 1, "one person, one lead");
    let lead = &leads[0];
    assert_eq!(
        lead.owner.as_deref(),
        Some("小李"),
        "name order: 小李 < 小王"
    );
    assert_eq!(
        (lead.channel.as_str(), lead.city.as_deref()),
        ("live", Some("杭州"))
    );
    assert_eq!(lead.first_contact_due, Some(T0 + 2 * H));
    let arrivals = h.app.store().arrivals(h.tenant, lead.id).unwrap();
    assert_eq!(
        arrivals
            .iter()
            .map(|a| (a.channel.as_str(), a.repeat))
            .collect::<Vec<_>>(),
        [("live", false), ("ad", true), ("private_message", true)]
    );
    assert_eq!(h.log_kinds(lead.id), ["assigned", "repeat", "repeat"]);
    // The agents' load: one open lead, one assignment today; nobody else followed it up.
    let agents = h.app.agents(h.tenant).unwrap();
    let li = agents.iter().find(|a| a.name == "小李").unwrap();
    let wang = agents.iter().find(|a| a.name == "小王").unwrap();
    assert_eq!((li.open_leads, li.today, wang.open_leads), (1, 1, 0));
    // A step taken again changes nothing.
    let r = h.step();
    assert_eq!((r.new_leads, r.repeats, r.assigned), (0, 0, 0));
    // The report counts the same rows: one lead, two repeats absorbed by tmk.
    h.clock.set(T0 + 30 * 60_000);
    h.app
        .log_follow_up(h.tenant, lead.id, "call", None, Some("小李"))
        .unwrap();
    let rep = h.app.lead_report(h.tenant).unwrap();
    assert_eq!((rep.leads, rep.open, rep.pooled, rep.repeats), (1, 1, 0, 2));
    let state = |s: &str| rep.by_state.iter().find(|c| c.state == s).unwrap().leads;
    assert_eq!((state("new"), state("contacted")), (0, 1));
    assert_eq!(
        rep.by_channel
            .iter()
            .map(|c| (c.channel.as_str(), c.leads, c.repeats))
            .collect::<Vec<_>>(),
        [("live", 1, 0), ("ad", 0, 1), ("private_message", 0, 1)]
    );
    assert_eq!(rep.by_agent[0].agent, "小李");
    assert_eq!(rep.repeats_by_team[0].team.as_deref(), Some("tmk"));
    assert_eq!(rep.repeats_by_team[0].repeats, 2);
    // Created at the first form (T0 - 3 s), contacted at T0 + 30 min.
    assert_eq!(rep.first_contact_minutes.count, 1);
    assert!((rep.first_contact_minutes.p50.unwrap() - 30.05).abs() < 1e-9);
    assert_eq!(rep.first_contact_in_time, Some(1.0));
}

#[test]
fn an_agent_at_capacity_is_skipped_and_the_pool_fills_at_nine() {
    let mut h = Harness::new();
    h.team("sales", None);
    h.agent("a", "sales", Some(1), Some("09:00-21:00"));
    h.agent("b", "sales", None, Some("09:00-21:00"));
    h.events(vec![
        form("f1", json!({"phone": "13900000001"}), "ad", T0),
        form("f2", json!({"phone": "13900000002"}), "ad", T0),
        form("f3", json!({"phone": "13900000003"}), "ad", T0),
    ]);
    h.step();
    let owners: Vec<Option<String>> = h.leads().into_iter().map(|l| l.owner).collect();
    // a, b, then a is at capacity: b.
    assert_eq!(
        owners,
        [Some("a".into()), Some("b".into()), Some("b".into())]
    );
    // 23:00 local: nobody is in; the lead waits in the pool, with why.
    h.clock.set(T0 + 13 * H);
    h.events(vec![form(
        "f4",
        json!({"phone": "13900000004"}),
        "ad",
        T0 + 13 * H,
    )]);
    let r = h.step();
    assert_eq!((r.new_leads, r.assigned, r.pooled), (1, 0, 1));
    let pooled = h.leads().pop().unwrap();
    assert_eq!(pooled.owner, None);
    let log = h.app.store().lead_log(h.tenant, pooled.id).unwrap();
    assert_eq!(log[0].kind, "pooled");
    let detail: Value = serde_json::from_str(log[0].detail.as_deref().unwrap()).unwrap();
    assert_eq!(
        detail["passed"],
        json!({"a": "off_hours", "b": "off_hours"})
    );
    // The worker knows to look again at 09:00, and then it is assigned.
    let nine = T0 + 23 * H;
    assert_eq!(r.next_wake, Some(nine));
    h.clock.set(nine);
    let r = h.step();
    assert_eq!(r.assigned, 1);
    assert_eq!(h.leads().pop().unwrap().owner.as_deref(), Some("b"));
    assert_eq!(h.log_kinds(pooled.id), ["pooled", "assigned"]);
}

#[test]
fn an_overdue_lead_escalates_once_to_the_next_agent() {
    let mut h = Harness::new();
    h.team("tmk", Some("2h"));
    h.agent("a", "tmk", None, None);
    h.agent("b", "tmk", None, None);
    h.events(vec![form(
        "f1",
        json!({"phone": "13700000001"}),
        "live",
        T0,
    )]);
    h.step();
    let lead = h.leads().pop().unwrap();
    assert_eq!(lead.owner.as_deref(), Some("a"));
    h.clock.set(T0 + 2 * H - 1);
    assert_eq!(h.step().escalated, 0);
    h.clock.set(T0 + 2 * H);
    assert_eq!(h.step().escalated, 1);
    let lead = h.leads().pop().unwrap();
    assert_eq!(lead.owner.as_deref(), Some("b"));
    assert_eq!(h.log_kinds(lead.id), ["assigned", "escalated", "assigned"]);
    // b contacts in time: nothing more.
    h.app
        .log_follow_up(h.tenant, lead.id, "call", Some("接通，有意向"), Some("b"))
        .unwrap();
    h.clock.set(T0 + 10 * H);
    assert_eq!(h.step().escalated, 0);
    let lead = h.leads().pop().unwrap();
    assert_eq!(lead.state, "contacted");
}

#[test]
fn an_overdue_lead_of_a_task_team_is_a_task_for_its_lead_agent() {
    let mut h = Harness::new();
    h.team("tmk", Some("2h"));
    h.agent("a", "tmk", None, None);
    h.agent("boss", "tmk", Some(0), None);
    h.app
        .put_team(
            h.tenant,
            &TeamSpec {
                name: "tmk".into(),
                first_contact: Some("2h".into()),
                lead_agent: Some("boss".into()),
                escalate: Some("task".into()),
                ..TeamSpec::default()
            },
        )
        .unwrap();
    h.events(vec![form(
        "f1",
        json!({"phone": "13700000002"}),
        "live",
        T0,
    )]);
    h.step();
    // A journey's task is already in the inbox: the lead's task is numbered after it.
    h.app
        .store()
        .commit_runs(
            h.tenant,
            &siyu_store::journeys::RunBatch {
                tasks: &[siyu_store::journeys::StoredTask {
                    id: 1,
                    team: "tmk".into(),
                    text: "回访".into(),
                    fan: None,
                    run: None,
                    step: None,
                    state: 0,
                    agent: None,
                    outcome: None,
                    created_at: T0,
                    due_at: None,
                    updated_at: T0,
                }],
                now: T0,
                ..Default::default()
            },
        )
        .unwrap();
    h.clock.set(T0 + 2 * H);
    assert_eq!(h.step().escalated, 1);
    let lead = h.leads().pop().unwrap();
    assert_eq!(
        lead.owner.as_deref(),
        Some("a"),
        "a task team keeps the owner"
    );
    let tasks = h.tasks();
    assert_eq!(tasks.len(), 2);
    let t = &tasks[1];
    assert_eq!((t.id, t.agent.as_deref()), (2, Some("boss")));
    assert_eq!(t.due_at, Some(T0 + 4 * H), "due within the team's window");
    assert!(
        t.text.contains(&format!("#{}", lead.id)) && t.text.contains('a'),
        "{}",
        t.text
    );
    // Once: the next steps escalate nothing more.
    h.clock.set(T0 + 5 * H);
    assert_eq!(h.step().escalated, 0);
    assert_eq!(h.tasks().len(), 2);
}

#[test]
fn a_deactivated_agent_hands_their_leads_back() {
    let mut h = Harness::new();
    h.team("tmk", None);
    h.agent("a", "tmk", None, None);
    h.events(vec![form(
        "f1",
        json!({"phone": "13600000001"}),
        "live",
        T0,
    )]);
    h.step();
    h.agent("b", "tmk", None, None);
    h.app
        .put_agent(
            h.tenant,
            &AgentSpec {
                name: "a".into(),
                active: Some(false),
                ..AgentSpec::default()
            },
        )
        .unwrap();
    h.step();
    let lead = h.leads().pop().unwrap();
    assert_eq!(lead.owner.as_deref(), Some("b"));
    assert_eq!(h.log_kinds(lead.id), ["assigned", "pooled", "assigned"]);
}

#[test]
fn bad_requests_name_the_field_and_change_nothing() {
    let mut h = Harness::new();
    h.team("tmk", None);
    h.agent("a", "tmk", None, None);
    let code = |e: super::LeadsError| (e.code(), e.field());
    let bad_agent = |spec: AgentSpec| code(h.app.put_agent(h.tenant, &spec).unwrap_err());
    assert_eq!(
        bad_agent(AgentSpec {
            name: "b".into(),
            team: Some("tmk".into()),
            capacity: Some(-1),
            ..AgentSpec::default()
        }),
        ("invalid_capacity", Some("capacity"))
    );
    assert_eq!(
        bad_agent(AgentSpec {
            name: "b".into(),
            team: Some("tmk".into()),
            hours: Some("9am-5pm".into()),
            ..AgentSpec::default()
        }),
        ("invalid_hours", Some("hours"))
    );
    assert_eq!(
        bad_agent(AgentSpec {
            name: "b".into(),
            team: Some("nope".into()),
            ..AgentSpec::default()
        }),
        ("team_not_found", Some("team"))
    );
    assert_eq!(h.app.agents(h.tenant).unwrap().len(), 1, "nothing stored");
    assert_eq!(
        code(
            h.app
                .add_route(h.tenant, "tag(\"高意向\")", "tmk")
                .unwrap_err()
        ),
        ("unknown_tag", Some("if"))
    );
    assert_eq!(
        code(h.app.add_route(h.tenant, "tag(", "tmk").unwrap_err()),
        ("invalid_expression", Some("if"))
    );
    assert!(h.app.store().lead_rules(h.tenant).unwrap().is_empty());
    h.events(vec![form(
        "f1",
        json!({"phone": "13500000001"}),
        "live",
        T0,
    )]);
    h.step();
    let lead = h.leads().pop().unwrap();
    assert_eq!(
        code(
            h.app
                .set_lead_state(h.tenant, lead.id, "won", None)
                .unwrap_err()
        ),
        ("state_not_allowed", Some("state"))
    );
    assert_eq!(
        code(
            h.app
                .assign_lead(h.tenant, lead.id, "ghost", false)
                .unwrap_err()
        ),
        ("agent_not_found", Some("agent"))
    );
    h.app
        .put_agent(
            h.tenant,
            &AgentSpec {
                name: "a".into(),
                active: Some(false),
                ..AgentSpec::default()
            },
        )
        .unwrap();
    assert_eq!(
        code(
            h.app
                .assign_lead(h.tenant, lead.id, "a", false)
                .unwrap_err()
        ),
        ("agent_inactive", Some("agent"))
    );
    assert_eq!(h.leads().pop().unwrap(), lead, "the lead is as it was");
}

#[test]
fn a_full_group_overflows_into_a_new_one() {
    let h = Harness::new();
    h.team("community", None);
    h.agent("小王", "community", None, None);
    let first = h
        .app
        .create_group(h.tenant, "新客群 1", Some("新客群"), Some(2), Some("小王"))
        .unwrap();
    assert_eq!(
        h.app
            .create_group(h.tenant, "新客群 1", None, None, None)
            .unwrap_err()
            .code(),
        "duplicate_group"
    );
    assert_eq!(
        h.app
            .create_group(h.tenant, "x", None, Some(0), None)
            .unwrap_err()
            .field(),
        Some("capacity")
    );
    let store = h.app.store().clone();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    // Three fans are invited one after another; each joins before the next invitation.
    let mut got = Vec::new();
    for fan in 1..=3 {
        let g = h
            .app
            .place_invites(h.tenant, &[(fan, "新客群")])
            .unwrap()
            .remove(0);
        got.push(g.name.clone());
        let mut next = store.lead_ids(h.tenant).unwrap().group;
        let events = [super::groups::GroupEvent {
            fan,
            ty: "group_join",
            group: &g.name,
            at: T0 + fan,
        }];
        let c = super::groups::apply(&*store, h.tenant, &events, &mut next, &tz, T0).unwrap();
        assert!(c.new_groups.is_empty());
        store
            .commit_leads(
                h.tenant,
                &siyu_store::leads::LeadBatch {
                    members: &c.members,
                    group_sizes: &c.sizes,
                    group_days: &c.days,
                    now: T0,
                    ..Default::default()
                },
            )
            .unwrap();
    }
    assert_eq!(got, ["新客群 1", "新客群 1", "新客群 2"]);
    let views = h.app.group_views(h.tenant).unwrap();
    let sizes: Vec<(String, i32, i32, Option<String>)> = views
        .iter()
        .map(|v| (v.name.clone(), v.members, v.capacity, v.owner.clone()))
        .collect();
    assert_eq!(
        sizes,
        [
            ("新客群 1".to_string(), 2, 2, Some("小王".to_string())),
            ("新客群 2".to_string(), 1, 2, Some("小王".to_string()))
        ]
    );
    assert_eq!(views[0].id, first.id);
    assert_eq!((views[0].joins, views[0].daily.len()), (2, 30));
    assert_eq!(views[0].daily.last().unwrap().date, "2026-12-01");
    // A leave, a message and a group Siyu has not heard of.
    let mut next = store.lead_ids(h.tenant).unwrap().group;
    let events = [
        super::groups::GroupEvent {
            fan: 1,
            ty: "group_leave",
            group: "新客群 1",
            at: T0 + 10,
        },
        super::groups::GroupEvent {
            fan: 2,
            ty: "group_message",
            group: "新客群 1",
            at: T0 + 11,
        },
        super::groups::GroupEvent {
            fan: 1,
            ty: "group_leave",
            group: "新客群 1",
            at: T0 + 12,
        },
        super::groups::GroupEvent {
            fan: 9,
            ty: "group_join",
            group: "dy_778",
            at: T0 + 13,
        },
    ];
    let c = super::groups::apply(&*store, h.tenant, &events, &mut next, &tz, T0).unwrap();
    assert_eq!(c.new_groups.len(), 1);
    assert_eq!(c.new_groups[0].template, super::groups::EXTERNAL);
    store
        .commit_leads(
            h.tenant,
            &siyu_store::leads::LeadBatch {
                new_groups: &c.new_groups,
                members: &c.members,
                group_sizes: &c.sizes,
                group_days: &c.days,
                now: T0,
                ..Default::default()
            },
        )
        .unwrap();
    let views = h.app.group_views(h.tenant).unwrap();
    let one = views.iter().find(|v| v.name == "新客群 1").unwrap();
    assert_eq!(
        (one.members, one.leaves, one.messages, one.active_7d),
        (1, 1, 1, 1)
    );
    assert_eq!(
        views.iter().find(|v| v.name == "dy_778").unwrap().members,
        1
    );
}

#[test]
fn group_events_keep_membership_through_the_worker() {
    let mut h = Harness::new();
    let ev = |id: &str, ty: &str, who: &str, group: &str, ts: i64| {
        json!({"id": id, "type": ty, "ts": siyu_domain::time::format_rfc3339(ts),
               "identities": {"douyin_open_id": who}, "props": {"group_id": group}})
    };
    h.events(vec![
        ev("j1", "group_join", "oA", "dy_1", T0 - 50),
        ev("j2", "group_join", "oB", "dy_1", T0 - 40),
        ev("m1", "group_message", "oA", "dy_1", T0 - 30),
        ev("l1", "group_leave", "oB", "dy_1", T0 - 20),
        ev("j3", "group_join", "oB", "dy_1", T0 - 10),
    ]);
    h.step();
    let v = h.app.group_views(h.tenant).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(
        (
            v[0].name.as_str(),
            v[0].members,
            v[0].joins,
            v[0].leaves,
            v[0].messages,
            v[0].active_7d
        ),
        ("dy_1", 2, 3, 1, 1, 1)
    );
    // The next step reads on from the committed cursor: nothing counted twice.
    h.step();
    assert_eq!(h.app.group_views(h.tenant).unwrap()[0].joins, 3);
    // A later page names some of the members only (a page reads just theirs): A leaves, C
    // joins, B joins again while in (nothing changes); the size moves by what changed.
    // The page opens a group first, so the known one must not be taken for new.
    h.events(vec![
        ev("j6", "group_join", "oD", "dy_2", T0 + 5),
        ev("l2", "group_leave", "oA", "dy_1", T0 + 10),
        ev("j4", "group_join", "oC", "dy_1", T0 + 20),
        ev("j5", "group_join", "oB", "dy_1", T0 + 30),
    ]);
    h.step();
    let v = h.app.group_views(h.tenant).unwrap();
    let v: Vec<_> = v.into_iter().filter(|g| g.name == "dy_1").collect();
    assert_eq!((v[0].members, v[0].joins, v[0].leaves), (2, 4, 2));
    let members = h.app.store().members(h.tenant, v[0].id, None).unwrap();
    let current: Vec<i64> = members
        .iter()
        .filter(|m| m.left_at.is_none())
        .map(|m| m.fan)
        .collect();
    assert_eq!(current.len(), 2);
    assert_eq!(members.len(), 3, "A is a past member");
}

#[test]
fn a_journeys_assign_lead_step_routes_the_fan_once() {
    let h = Harness::new();
    h.team("tmk", Some("2h"));
    h.agent("a", "tmk", None, None);
    h.app
        .apply_journey(
            h.tenant,
            r#"
name = "call_new_followers"
trigger = { event = "follow" }
[[steps]]
id = "lead"
type = "assign_lead"
team = "tmk"
"#,
        )
        .unwrap();
    h.events(vec![json!({"id": "f1", "type": "follow",
        "ts": siyu_domain::time::format_rfc3339(T0),
        "identities": {"douyin_open_id": "oZ"}})]);
    let mut jw = crate::journeys::worker::JourneyWorker::new(h.app.clone());
    let mut ow = crate::journeys::outbox::OutboxWorker::new(h.app.clone());
    jw.step(T0).unwrap();
    ow.step(T0).unwrap();
    let leads = h.leads();
    assert_eq!(leads.len(), 1);
    assert_eq!(
        (
            leads[0].owner.as_deref(),
            leads[0].channel.as_str(),
            leads[0].team.as_deref()
        ),
        (Some("a"), "journey", Some("tmk"))
    );
    assert_eq!(leads[0].first_contact_due, Some(T0 + 2 * H));
    // The outbox delivering the row again (a crash before its settling) adds nothing.
    let row = h
        .app
        .store()
        .outbox(
            h.tenant,
            &siyu_store::journeys::OutboxFilter {
                channel: Some(super::LEADS),
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(row.len(), 1);
    h.app
        .leads_from_journeys(h.tenant, &[(row[0].key.clone(), row[0].fan, "tmk".into())])
        .unwrap();
    assert_eq!(h.leads().len(), 1);
    assert_eq!(
        h.app.store().arrivals(h.tenant, leads[0].id).unwrap().len(),
        1
    );
}

#[test]
fn merged_fans_keep_the_older_lead_and_an_undone_merge_splits_them() {
    let mut h = Harness::new();
    h.team("tmk", None);
    h.agent("a", "tmk", None, None);
    h.agent("b", "tmk", None, None);
    h.events(vec![
        form("f1", json!({"phone": "13400000001"}), "live", T0),
        form("f2", json!({"douyin_open_id": "oQ"}), "ad", T0),
    ]);
    h.step();
    let before = h.leads();
    assert_eq!(before.len(), 2);
    h.app
        .set_lead_state(h.tenant, before[1].id, "contacted", Some("b"))
        .unwrap();
    // One event carries both: the two fans are one person.
    h.events(vec![json!({"id": "link", "type": "follow",
        "ts": siyu_domain::time::format_rfc3339(T0 + 1000),
        "identities": {"phone": "13400000001", "douyin_open_id": "oQ"}})]);
    h.clock.set(T0 + 61_000);
    h.step();
    let after = h.leads();
    assert_eq!(
        after.iter().map(|l| l.state.as_str()).collect::<Vec<_>>(),
        ["new", "merged"]
    );
    assert_eq!(h.log_kinds(before[0].id), ["assigned", "merged"]);
    // The newer lead's owner is told to stop, in their own inbox.
    let tasks = h.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].agent, before[1].owner);
    assert_eq!(tasks[0].team, "tmk");
    assert_eq!(tasks[0].fan, Some(before[1].fan));
    assert!(
        tasks[0].text.contains(&format!("#{}", before[1].id))
            && tasks[0].text.contains(&format!("#{}", before[0].id)),
        "{}",
        tasks[0].text
    );
    let open = h
        .app
        .leads(
            h.tenant,
            &LeadFilter {
                open: true,
                limit: 10,
                ..LeadFilter::default()
            },
        )
        .unwrap();
    assert_eq!(open.len(), 1, "one person, one open lead");
    // A new form of the person is a repeat on the older lead.
    h.events(vec![form(
        "f3",
        json!({"douyin_open_id": "oQ"}),
        "private_message",
        T0 + 62_000,
    )]);
    assert_eq!(h.step().repeats, 1);
    // Undoing the merge brings the newer lead back, as it was.
    let absorbed = h
        .app
        .ingestor
        .read(h.tenant, |e| {
            [before[1].fan, before[0].fan]
                .into_iter()
                .find_map(|f| e.identities().merge_absorbing(siyu_engine::FanId(f)))
                .map(|m| m.from)
        })
        .unwrap()
        .expect("a merge absorbed the open id's fan");
    h.app.unmerge(h.tenant, absorbed).unwrap();
    h.clock.set(T0 + 130_000);
    h.step();
    let split = h.leads();
    assert_eq!(
        split.iter().map(|l| l.state.as_str()).collect::<Vec<_>>(),
        ["new", "contacted"]
    );
    assert_eq!(split[1].owner, before[1].owner);
    assert_eq!(split[1].closed_at, None);
    // And told it is theirs again; the log names each task.
    let tasks = h.tasks();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1].agent, before[1].owner);
    assert!(tasks[1].text.contains("拆分"), "{}", tasks[1].text);
    let log = h.app.store().lead_log(h.tenant, before[1].id).unwrap();
    let task_of = |kind: &str| {
        log.iter()
            .filter(|l| l.kind == kind)
            .find_map(|l| serde_json::from_str::<Value>(l.detail.as_deref()?).ok())
            .map(|d| d["task"].clone())
    };
    assert_eq!(task_of("merged"), Some(json!(tasks[0].id)));
    assert_eq!(task_of("split"), Some(json!(tasks[1].id)));
}

#[test]
fn a_phone_first_given_in_a_chat_is_a_lead_once() {
    let mut h = Harness::new();
    h.team("tmk", None);
    h.agent("a", "tmk", None, None);
    let im = |id: &str, ids: Value, ts: i64| {
        json!({"id": id, "type": "private_message_in", "ts": siyu_domain::time::format_rfc3339(ts),
               "identities": ids, "props": {"text": "我的电话 13300000001"}})
    };
    h.events(vec![
        im("m0", json!({"douyin_open_id": "oC"}), T0),
        im(
            "m1",
            json!({"douyin_open_id": "oC", "phone": "13300000001"}),
            T0 + 1,
        ),
        im(
            "m2",
            json!({"douyin_open_id": "oC", "phone": "13300000001"}),
            T0 + 2,
        ),
    ]);
    let r = h.step();
    assert_eq!((r.new_leads, r.repeats), (1, 0));
    let leads = h.leads();
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0].channel, super::worker::IM_PHONE);
    // Closed, the person's later chats make no new lead; a form does.
    h.app
        .set_lead_state(h.tenant, leads[0].id, "lost", None)
        .unwrap();
    h.events(vec![im("m3", json!({"phone": "13300000001"}), T0 + 3)]);
    assert_eq!(h.step().new_leads, 0);
    h.events(vec![form(
        "f9",
        json!({"phone": "13300000001"}),
        "ad",
        T0 + 4,
    )]);
    assert_eq!(h.step().new_leads, 1);
}

#[test]
fn a_burst_of_invitations_never_overfills_a_group() {
    let h = Harness::new();
    h.app
        .create_group(h.tenant, "福利群", None, Some(2), None)
        .unwrap();
    let names = |asks: &[(i64, &str)]| -> Vec<String> {
        h.app
            .place_invites(h.tenant, asks)
            .unwrap()
            .into_iter()
            .map(|g| g.name)
            .collect()
    };
    // Five fans at once: two seats a group, nobody has joined yet.
    let asks: Vec<(i64, &str)> = (1..=5).map(|f| (f, "福利群")).collect();
    assert_eq!(
        names(&asks),
        ["福利群", "福利群", "福利群 2", "福利群 2", "福利群 3"]
    );
    // Asked again (a retried step): the same groups, no more seats.
    assert_eq!(names(&asks[..1]), ["福利群"]);
    assert_eq!(names(&[(6, "福利群")]), ["福利群 3"]);
    assert_eq!(h.app.group_views(h.tenant).unwrap().len(), 3);
    // Fan 1 joins: they sit in the group; invited again, they are placed where they are.
    let store = h.app.store().clone();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let mut next = store.lead_ids(h.tenant).unwrap().group;
    let join = [super::groups::GroupEvent {
        fan: 1,
        ty: "group_join",
        group: "福利群",
        at: T0,
    }];
    let c = super::groups::apply(&*store, h.tenant, &join, &mut next, &tz, T0).unwrap();
    store
        .commit_leads(
            h.tenant,
            &siyu_store::leads::LeadBatch {
                members: &c.members,
                group_sizes: &c.sizes,
                now: T0,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(store.invites_held(h.tenant, 0).unwrap()[0], (1, 1));
    assert_eq!(names(&[(1, "福利群")]), ["福利群"]);
    // Invitations unanswered for the hold free their seats.
    h.clock.set(T0 + siyu_leads::groups::HOLD_MS + 1);
    assert_eq!(names(&[(7, "福利群")]), ["福利群"]);
}
