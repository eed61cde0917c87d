//! Tests of the generated data as a whole: format, determinism, the plausibility rules, the
//! truth file, and the headline rates the crate documentation promises.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::Value;

use super::*;

const END: &str = "2026-10-31T16:00:00Z";

fn config(fans: u64, days: u32, seed: u64) -> GenConfig {
    GenConfig {
        fans,
        days,
        seed,
        end: END.parse().unwrap(),
    }
}

struct Run {
    cfg: GenConfig,
    out: Vec<u8>,
    truth: Vec<u8>,
    summary: GenSummary,
}

fn run(cfg: GenConfig) -> Run {
    let mut out = Vec::new();
    let mut truth = Vec::new();
    let mut calls = 0;
    let summary = generate(&cfg, &mut out, Some(&mut truth), &mut |_| calls += 1).unwrap();
    assert!(calls >= 1);
    Run {
        cfg,
        out,
        truth,
        summary,
    }
}

/// The data most tests look at: 20,000 people over 90 days.
fn sample() -> &'static Sample {
    static S: OnceLock<Sample> = OnceLock::new();
    S.get_or_init(|| Sample::new(run(config(20_000, 90, 42))))
}

/// Normalizes an identity value the way docs/events.md says ingest does.
fn normalize(kind: &str, raw: &str) -> Option<String> {
    match kind {
        "phone" => {
            let s: String = raw
                .chars()
                .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
                .collect();
            let national = s
                .strip_prefix("+86")
                .or_else(|| s.strip_prefix("0086"))
                .or_else(|| s.strip_prefix("86").filter(|n| n.len() == 11))
                .unwrap_or(&s);
            let b = national.as_bytes();
            let mobile = b.len() == 11
                && b[0] == b'1'
                && (b'3'..=b'9').contains(&b[1])
                && b.iter().all(u8::is_ascii_digit);
            mobile.then(|| format!("+86{national}"))
        }
        "email" => Some(raw.trim().to_lowercase()),
        _ => Some(raw.to_string()),
    }
}

struct Event {
    ty: String,
    ts: i64,
    source: String,
    /// (kind, raw value)
    ids: Vec<(String, String)>,
    props: serde_json::Map<String, Value>,
}

impl Event {
    fn id(&self, kind: &str) -> Option<&str> {
        self.ids
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
    }
    fn prop(&self, name: &str) -> &str {
        self.props[name].as_str().unwrap()
    }
}

struct Sample {
    run: Run,
    lines: Vec<String>,
    events: Vec<Event>,
    /// (kind, normalized value) → persons.
    truth: HashMap<(String, String), Vec<String>>,
    /// The person of each event (by an identity only they have).
    person_of: Vec<String>,
}

impl Sample {
    fn new(run: Run) -> Sample {
        let text = std::str::from_utf8(&run.out).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let events: Vec<Event> = lines
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let ts: jiff::Timestamp = v["ts"].as_str().unwrap().parse().unwrap();
                Event {
                    ty: v["type"].as_str().unwrap().to_string(),
                    ts: ts.as_millisecond(),
                    source: v["source"].as_str().unwrap().to_string(),
                    ids: v["identities"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect(),
                    props: v["props"].as_object().unwrap().clone(),
                }
            })
            .collect();
        let mut truth: HashMap<(String, String), Vec<String>> = HashMap::new();
        let csv = std::str::from_utf8(&run.truth).unwrap();
        let mut rows = csv.lines();
        assert_eq!(rows.next(), Some("kind,value,person"));
        for row in rows {
            let f: Vec<&str> = row.split(',').collect();
            assert_eq!(f.len(), 3, "{row}");
            truth
                .entry((f[0].to_string(), f[1].to_string()))
                .or_default()
                .push(f[2].to_string());
        }
        let person_of = events
            .iter()
            .map(|e| {
                e.ids
                    .iter()
                    .find_map(|(k, v)| {
                        let persons = truth.get(&(k.clone(), normalize(k, v)?))?;
                        (persons.len() == 1).then(|| persons[0].clone())
                    })
                    .expect("every event carries an identity unique to its person")
            })
            .collect();
        Sample {
            run,
            lines,
            events,
            truth,
            person_of,
        }
    }

    /// Events per person, in file order.
    fn by_person(&self) -> HashMap<&str, Vec<&Event>> {
        let mut m: HashMap<&str, Vec<&Event>> = HashMap::new();
        for (e, p) in self.events.iter().zip(&self.person_of) {
            m.entry(p.as_str()).or_default().push(e);
        }
        m
    }
}

#[test]
fn same_config_same_bytes_other_seed_other_bytes() {
    let a = run(config(2_000, 30, 7));
    let b = run(config(2_000, 30, 7));
    assert!(a.out == b.out, "events differ between two runs");
    assert!(a.truth == b.truth, "truth differs between two runs");
    let c = run(config(2_000, 30, 8));
    assert!(a.out != c.out);
    assert!(a.truth != c.truth);
}

#[test]
fn without_truth_the_events_are_the_same() {
    let cfg = config(1_000, 20, 3);
    let a = run(cfg.clone());
    let mut out = Vec::new();
    let s = generate(&cfg, &mut out, None, &mut |_| {}).unwrap();
    assert!(a.out == out);
    assert_eq!(s.events, a.summary.events);
}

#[test]
fn timestamps_lie_in_the_window_in_order() {
    let s = sample();
    let end: jiff::Timestamp = END.parse().unwrap();
    let end = end.as_millisecond();
    let start = end - 90 * 86_400_000;
    let mut last = i64::MIN;
    for e in &s.events {
        assert!(e.ts > start && e.ts <= end, "{} outside the window", e.ts);
        assert!(e.ts >= last, "not sorted");
        last = e.ts;
    }
    // The exact ts text: RFC 3339 UTC with milliseconds.
    let v: Value = serde_json::from_str(&s.lines[0]).unwrap();
    let ts = v["ts"].as_str().unwrap();
    let parsed: jiff::Timestamp = ts.parse().unwrap();
    assert_eq!(format!("{parsed:.3}"), ts);
}

#[test]
fn ids_are_unique_and_lines_have_the_native_shape() {
    let s = sample();
    let mut ids = HashSet::new();
    for l in &s.lines {
        let v: Value = serde_json::from_str(l).unwrap();
        let o = v.as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["id", "identities", "props", "source", "ts", "type"]);
        assert!(ids.insert(v["id"].as_str().unwrap().to_string()));
    }
    assert_eq!(ids.len() as u64, s.run.summary.events);
}

#[test]
fn every_line_is_accepted_by_the_domain_parser() {
    let s = sample();
    let end = s.run.cfg.end.as_millisecond();
    for (l, p) in s.lines.iter().zip(&s.person_of) {
        let e = siyu_domain::parse_event(l, end).unwrap_or_else(|e| panic!("{l}: {e:?}"));
        for id in e.identities.iter() {
            let persons = &s.truth[&(id.kind.as_str().to_string(), id.value().to_string())];
            assert!(persons.contains(p), "{l}");
        }
    }
}

#[test]
fn props_follow_the_catalogue() {
    let s = sample();
    let sources: HashMap<&str, &[&str]> = HashMap::from([
        ("ad_impression", &["oceanengine"][..]),
        ("ad_click", &["oceanengine"]),
        ("order", &["shop"]),
        ("refund", &["shop"]),
        ("video_view", &["douyin"]),
        ("follow", &["douyin"]),
        ("lead_form", &["douyin", "oceanengine"]),
        ("private_message_in", &["douyin", "wecom"]),
        ("group_message", &["douyin", "wecom"]),
    ]);
    for e in &s.events {
        if let Some(ok) = sources.get(e.ty.as_str()) {
            assert!(
                ok.contains(&e.source.as_str()),
                "{} from {}",
                e.ty,
                e.source
            );
        }
        match e.ty.as_str() {
            "live_watch" => assert!(e.props["duration_s"].is_u64()),
            "lead_form" => {
                assert!(!e.prop("name").is_empty());
                match e.prop("channel") {
                    "ad" => {
                        assert!(e.props.contains_key("ad_id"));
                        assert_eq!(e.source, "oceanengine");
                        assert!(e.id("douyin_open_id").is_none(), "ad leads have no open id");
                        assert!(e.id("lead_id").is_some() && e.id("phone").is_some());
                    }
                    "live" => {
                        assert!(e.id("douyin_open_id").is_some() && e.id("lead_id").is_some());
                    }
                    "private_message" => assert!(e.id("douyin_open_id").is_some()),
                    other => panic!("channel {other}"),
                }
            }
            "group_join" | "group_leave" | "group_message" => {
                assert!(e.prop("group_id").starts_with("grp_"));
            }
            "order" | "refund" => {
                assert!(!e.prop("order_id").is_empty());
                let a = e.props["amount"].as_f64().unwrap();
                assert!((0.01..=1999.0).contains(&a), "{a}");
                assert!(((a * 100.0).round() - a * 100.0).abs() < 1e-6);
                if e.ty == "order" {
                    assert!(a >= 19.9);
                }
            }
            "private_message_in" => assert!(!e.prop("text").is_empty()),
            t if t.starts_with("video_") => assert!(!e.prop("video_id").is_empty()),
            "live_enter" | "live_comment" => assert!(!e.prop("live_id").is_empty()),
            _ => {}
        }
    }
}

#[test]
fn activity_follows_the_clock() {
    let s = sample();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let mut by_hour = [0u32; 24];
    let mut by_weekday = [0u32; 7];
    for e in &s.events {
        let local = jiff::Timestamp::from_millisecond(e.ts)
            .unwrap()
            .to_zoned(tz.clone());
        by_hour[local.hour() as usize] += 1;
        by_weekday[local.weekday().to_monday_zero_offset() as usize] += 1;
    }
    let evening: u32 = by_hour[19..23].iter().sum();
    let night: u32 = by_hour[1..6].iter().sum();
    assert!(evening > 6 * night, "evening {evening}, night {night}");
    let weekend = (by_weekday[5] + by_weekday[6]) as f64 / 2.0;
    let midweek = (by_weekday[1] + by_weekday[2]) as f64 / 2.0;
    assert!(weekend > midweek, "{by_weekday:?}");
}

#[test]
fn lives_fall_on_evenings_in_shanghai() {
    let s = sample();
    for e in s.events.iter().filter(|e| e.ty == "live_enter") {
        let t = jiff::Timestamp::from_millisecond(e.ts).unwrap();
        let local = t.to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap());
        let minutes = local.hour() as i32 * 60 + local.minute() as i32;
        assert!((19 * 60..=22 * 60 + 30).contains(&minutes), "{local}");
    }
    let lives: HashSet<&str> = s
        .events
        .iter()
        .filter(|e| e.ty == "live_enter")
        .map(|e| e.prop("live_id"))
        .collect();
    // About four evenings a week.
    assert!((40..=66).contains(&lives.len()), "{} lives", lives.len());
}

#[test]
fn each_persons_history_is_plausible() {
    let s = sample();
    let mut followers = 0;
    let mut private_after_follow = 0;
    let mut private = 0;
    for (p, evs) in s.by_person() {
        let mut following = false;
        let mut ever_followed = false;
        let mut subscribed = false;
        let mut groups: HashSet<&str> = HashSet::new();
        let mut orders: HashMap<&str, f64> = HashMap::new();
        let mut refunded: HashSet<&str> = HashSet::new();
        let mut wecom_linked = false;
        for e in &evs {
            match e.ty.as_str() {
                "follow" => {
                    assert!(!following, "{p}: follow while following");
                    following = true;
                    ever_followed = true;
                }
                "unfollow" => {
                    assert!(following, "{p}: unfollow without follow");
                    following = false;
                }
                "subscribe" => {
                    assert!(!subscribed, "{p}: subscribed twice");
                    subscribed = true;
                }
                "unsubscribe" => {
                    assert!(subscribed, "{p}: unsubscribe before subscribe");
                    subscribed = false;
                }
                "group_join" => assert!(groups.insert(e.prop("group_id")), "{p}: joined twice"),
                "group_leave" => assert!(groups.remove(e.prop("group_id")), "{p}: left unjoined"),
                "group_message" => {
                    assert!(groups.contains(e.prop("group_id")), "{p}: not in group")
                }
                "order" => {
                    let amount = e.props["amount"].as_f64().unwrap();
                    assert!(orders.insert(e.prop("order_id"), amount).is_none());
                }
                "refund" => {
                    let id = e.prop("order_id");
                    let paid = orders
                        .get(id)
                        .unwrap_or_else(|| panic!("{p}: refund first"));
                    assert!(e.props["amount"].as_f64().unwrap() <= *paid);
                    assert!(refunded.insert(id), "{p}: refunded twice");
                }
                _ => {}
            }
            if e.id("wecom_external_id").is_some() {
                // The first WeCom event ties the contact to the person.
                if !wecom_linked {
                    assert!(
                        e.id("phone").is_some() || e.id("douyin_open_id").is_some(),
                        "{p}: WeCom contact never linked"
                    );
                    wecom_linked = true;
                }
            }
            let private_type = matches!(
                e.ty.as_str(),
                "private_message_in"
                    | "subscribe"
                    | "group_join"
                    | "group_message"
                    | "coupon_claim"
                    | "store_visit"
            );
            if private_type {
                private += 1;
                private_after_follow += ever_followed as u32;
            }
        }
        followers += ever_followed as u32;
    }
    assert!(followers > 0);
    let share = private_after_follow as f64 / private as f64;
    assert!(
        share > 0.9,
        "only {share:.3} of private-domain events follow a follow"
    );
}

#[test]
fn truth_is_exactly_the_identities_in_the_events() {
    let s = sample();
    let mut used: HashSet<(String, String)> = HashSet::new();
    let mut formats: HashMap<String, HashSet<String>> = HashMap::new();
    for (e, p) in s.events.iter().zip(&s.person_of) {
        for (k, v) in &e.ids {
            let n = normalize(k, v).unwrap_or_else(|| panic!("{k} {v} does not normalize"));
            let persons = s
                .truth
                .get(&(k.clone(), n.clone()))
                .unwrap_or_else(|| panic!("{k} {n} not in truth"));
            assert!(persons.contains(p));
            if k == "phone" {
                formats.entry(n.clone()).or_default().insert(v.clone());
            }
            used.insert((k.clone(), n));
        }
    }
    let rows: usize = s.truth.values().map(Vec::len).sum();
    assert_eq!(
        used.len(),
        s.truth.len(),
        "truth has values no event carries"
    );
    assert_eq!(s.run.summary.identities as usize, s.truth.len());
    assert!(
        rows > s.truth.len(),
        "family phones give two rows to one value"
    );
    for persons in s.truth.values() {
        let distinct: HashSet<&String> = persons.iter().collect();
        assert_eq!(distinct.len(), persons.len(), "duplicate truth row");
    }
    // The same phone arrives written in several ways.
    assert!(formats.values().any(|f| f.len() >= 3));
    // All seven spellings occur somewhere.
    let shapes: HashSet<String> = formats
        .values()
        .flatten()
        .map(|v| {
            v.chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect()
        })
        .collect();
    for shape in [
        "99999999999",
        "999 9999 9999",
        "+99-99999999999",
        "9999999999999",
        "+99 999-9999-9999",
        "9999 99999999999",
        "(+99) 999.9999.9999",
    ] {
        assert!(shapes.contains(shape), "no phone written as {shape}");
    }
    // Emails arrive in mixed case but the truth holds them lowercased.
    assert!(
        s.events
            .iter()
            .flat_map(|e| &e.ids)
            .any(|(k, v)| k == "email" && v.chars().any(|c| c.is_ascii_uppercase()))
    );
}

#[test]
fn every_phone_spelling_normalizes_to_the_truth_value() {
    let keys = ids::IdKeys::new(5);
    for person in [0, 1, 17, 99_999] {
        let mut want = Vec::new();
        keys.phone_normalized(&mut want, person);
        let want = String::from_utf8(want).unwrap();
        for format in 0..7 {
            let mut raw = Vec::new();
            keys.phone(&mut raw, person, format);
            let raw = String::from_utf8(raw).unwrap();
            assert_eq!(
                normalize("phone", &raw).as_deref(),
                Some(want.as_str()),
                "{raw}"
            );
            assert_eq!(siyu_domain::identity::normalize_phone(&raw).unwrap(), want);
        }
    }
}

#[test]
fn family_phones_are_shared_by_two_people() {
    let s = sample();
    let shared: Vec<&Vec<String>> = s
        .truth
        .iter()
        .filter(|((k, _), persons)| k == "phone" && persons.len() > 1)
        .map(|(_, p)| p)
        .collect();
    assert!(shared.len() >= 10, "{} shared phones", shared.len());
    assert_eq!(shared.len() as u64, s.run.summary.shared_phones);
    let phones = s.truth.keys().filter(|(k, _)| k == "phone").count();
    let people_with_phone: usize = s
        .truth
        .iter()
        .filter(|((k, _), _)| k == "phone")
        .map(|(_, p)| p.len())
        .sum();
    let sharing: usize = shared.iter().map(|p| p.len()).sum();
    let share = sharing as f64 / people_with_phone as f64;
    assert!(
        (0.01..=0.04).contains(&share),
        "{share:.4} of phone users share ({phones} phones)"
    );
}

#[test]
fn leads_arrive_through_several_channels() {
    let s = sample();
    let by_person = s.by_person();
    let followers: Vec<&Vec<&Event>> = by_person
        .values()
        .filter(|evs| evs.iter().any(|e| e.ty == "follow"))
        .collect();
    let leading = followers
        .iter()
        .filter(|evs| evs.iter().any(|e| e.ty == "lead_form"))
        .count();
    let share = leading as f64 / followers.len() as f64;
    assert!(
        (0.18..=0.32).contains(&share),
        "{share:.3} of followers leave a lead"
    );
    let multi = by_person
        .values()
        .filter(|evs| {
            let channels: HashSet<&str> = evs
                .iter()
                .filter(|e| e.ty == "lead_form")
                .map(|e| e.prop("channel"))
                .collect();
            channels.len() >= 2
        })
        .count();
    assert!(
        multi as f64 >= 0.25 * leading as f64,
        "{multi} of {leading} use ≥ 2 channels"
    );
    let non_follower_leads = by_person
        .values()
        .filter(|evs| {
            evs.iter().all(|e| e.ty != "follow") && evs.iter().any(|e| e.ty == "lead_form")
        })
        .count();
    assert!(
        non_follower_leads > 50,
        "{non_follower_leads} ad leads from non-followers"
    );
    let leads: Vec<&Event> = s.events.iter().filter(|e| e.ty == "lead_form").collect();
    assert!(
        leads.iter().any(|e| e.id("phone").is_none()),
        "some leads without phone"
    );
    let lead_ids: Vec<&str> = leads.iter().filter_map(|e| e.id("lead_id")).collect();
    let distinct: HashSet<&&str> = lead_ids.iter().collect();
    assert_eq!(
        distinct.len(),
        lead_ids.len(),
        "lead ids are unique per form"
    );
}

#[test]
fn shop_and_wecom_identities_link_to_douyin() {
    let s = sample();
    let mut linked_users = HashSet::new();
    let mut users = HashSet::new();
    for e in &s.events {
        if let Some(u) = e.id("user_id") {
            users.insert(u);
            if e.id("douyin_open_id").is_some() {
                linked_users.insert(u);
            }
        }
    }
    assert!(!users.is_empty());
    assert_eq!(
        users, linked_users,
        "every shop account shows once with its open id"
    );
}

#[test]
fn about_four_in_ten_ever_follow() {
    let s = sample();
    let by_person = s.by_person();
    assert_eq!(by_person.len() as u64, s.run.summary.people);
    assert_eq!(s.run.summary.people, 20_000);
    let followers = by_person
        .values()
        .filter(|evs| evs.iter().any(|e| e.ty == "follow"))
        .count();
    let share = followers as f64 / by_person.len() as f64;
    assert!((0.30..=0.50).contains(&share), "{share:.3} follow");
    let buyers = by_person
        .values()
        .filter(|evs| evs.iter().any(|e| e.ty == "order"))
        .count();
    let repeat = by_person
        .values()
        .filter(|evs| evs.iter().filter(|e| e.ty == "order").count() >= 2)
        .count();
    assert!(
        buyers > 0 && repeat * 5 > buyers,
        "{repeat} of {buyers} buy again"
    );
    for ty in [
        "unfollow",
        "refund",
        "store_visit",
        "group_leave",
        "unsubscribe",
        "video_share",
        "live_comment",
        "coupon_claim",
    ] {
        assert!(s.events.iter().any(|e| e.ty == ty), "no {ty}");
    }
}

#[test]
fn events_per_person_is_about_days_over_eight() {
    let s = sample();
    let mean = s.events.len() as f64 / 20_000.0;
    assert!(
        (9.5..=13.0).contains(&mean),
        "{mean:.2} events per person over 90 days"
    );
    // Heavy tail: most people see little, a few see a lot.
    let mut counts: Vec<usize> = s.by_person().values().map(Vec::len).collect();
    counts.sort_unstable();
    let median = counts[counts.len() / 2];
    let p99 = counts[counts.len() * 99 / 100];
    assert!(median <= 4, "median {median}");
    assert!(p99 >= 60, "99th percentile {p99}");
}

#[test]
fn estimate_is_close() {
    for (fans, days) in [(3_000, 30), (3_000, 90), (1_000, 240)] {
        let cfg = config(fans, days, 11);
        let mut out = Vec::new();
        let s = generate(&cfg, &mut out, None, &mut |_| {}).unwrap();
        let est = estimate_events(&cfg) as f64;
        let ratio = s.events as f64 / est;
        assert!(
            (0.8..=1.25).contains(&ratio),
            "{days} days: {} vs {est}",
            s.events
        );
    }
    assert_eq!(estimate_events(&config(0, 90, 1)), 0);
}

#[test]
fn bad_configs_are_refused() {
    let mut out = Vec::new();
    let e = generate(&config(10, 0, 1), &mut out, None, &mut |_| {}).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let s = generate(&config(0, 5, 1), &mut out, None, &mut |_| {}).unwrap();
    assert_eq!((s.events, s.people), (0, 0));
    assert!(out.is_empty());
}

/// Prints the model's headline numbers for several window lengths (used to calibrate
/// `world::intensity` and `events_per_person`):
/// `cargo test -p siyu-gen --release -- --ignored calibration --nocapture`
#[test]
#[ignore]
fn calibration() {
    for days in [1, 7, 30, 60, 90, 180, 240, 365] {
        let cfg = config(20_000, days, 1);
        let mut out = Vec::new();
        let mut truth = Vec::new();
        let s = generate(&cfg, &mut out, Some(&mut truth), &mut |_| {}).unwrap();
        let mut types: HashMap<String, u64> = HashMap::new();
        for l in std::str::from_utf8(&out).unwrap().lines() {
            let i = l.find("\"type\":\"").unwrap() + 8;
            let t = &l[i..i + l[i..].find('"').unwrap()];
            *types.entry(t.to_string()).or_default() += 1;
        }
        let follows = types.get("follow").copied().unwrap_or(0);
        println!(
            "{days:>3} days: {:.2} events/person (target {:.2}), {} follows, {s:?}",
            s.events as f64 / 20_000.0,
            days as f64 / 8.0,
            follows
        );
        if days == 90 || days == 240 {
            let sample = Sample::new(Run {
                cfg,
                out: out.clone(),
                truth: truth.clone(),
                summary: s.clone(),
            });
            let by = sample.by_person();
            let (mut f, mut fe, mut nf, mut nfe) = (0, 0, 0, 0);
            for evs in by.values() {
                if evs.iter().any(|e| e.ty == "follow") {
                    f += 1;
                    fe += evs.len();
                } else {
                    nf += 1;
                    nfe += evs.len();
                }
            }
            let mut counts: Vec<usize> = by.values().map(Vec::len).collect();
            counts.sort_unstable();
            let q = |x: f64| counts[((counts.len() - 1) as f64 * x) as usize];
            println!(
                "followers {f} ({:.1}/person), others {nf} ({:.1}/person); quantiles 25/50/75/90/99/max: {} {} {} {} {} {}",
                fe as f64 / f as f64,
                nfe as f64 / nf as f64,
                q(0.25),
                q(0.5),
                q(0.75),
                q(0.9),
                q(0.99),
                q(1.0)
            );
            report(&sample);
            let mut t: Vec<_> = types.into_iter().collect();
            t.sort_by_key(|x| std::cmp::Reverse(x.1));
            println!("{t:?}");
        }
    }
}

/// Generation speed: `cargo test -p siyu-gen --release -- --ignored throughput --nocapture`
#[test]
#[ignore]
fn throughput() {
    for (fans, days) in [(100_000, 90), (1_000_000, 240)] {
        let cfg = config(fans, days, 1);
        let started = std::time::Instant::now();
        let mut sink = std::io::sink();
        let s = generate(&cfg, &mut sink, None, &mut |_| {}).unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{fans} fans × {days} days: {} events in {secs:.2} s = {:.2} M events/s; {s:?}",
            s.events,
            s.events as f64 / secs / 1e6
        );
    }
    // The same, into real files, with the truth.
    let dir = std::env::temp_dir();
    let (events, truth) = (
        dir.join("siyu-gen-events.jsonl"),
        dir.join("siyu-gen-truth.csv"),
    );
    let started = std::time::Instant::now();
    let mut out = std::fs::File::create(&events).unwrap();
    let mut t = std::fs::File::create(&truth).unwrap();
    let s = generate(&config(100_000, 90, 1), &mut out, Some(&mut t), &mut |_| {}).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&events).unwrap().len();
    println!(
        "to a file with truth: {:.2} M events/s, {:.0} bytes/event, {:.0} MB/s",
        s.events as f64 / secs / 1e6,
        bytes as f64 / s.events as f64,
        bytes as f64 / secs / 1e6
    );
    std::fs::remove_file(events).unwrap();
    std::fs::remove_file(truth).unwrap();
}

/// Finds, per window length, the activity level at which the mean is days / 8 (two secant
/// steps from two guesses):
/// `cargo test -p siyu-gen --release -- --ignored fit_intensity --nocapture`
#[test]
#[ignore]
fn fit_intensity() {
    let mean = |days: u32, x: f64| {
        let mut total = 0;
        for seed in [1, 2] {
            let s = generate_at(
                &config(20_000, days, seed),
                x,
                &mut std::io::sink(),
                None,
                &mut |_| {},
            )
            .unwrap();
            total += s.events;
        }
        total as f64 / 40_000.0
    };
    for days in [14, 30, 45, 60, 90, 120, 180, 240, 300, 365, 540, 730] {
        let target = days as f64 / 8.0;
        let (mut x0, mut x1) = (0.5, 1.0);
        let (mut y0, mut y1) = (mean(days, x0), mean(days, x1));
        for _ in 0..2 {
            let x2 = (x1 + (target - y1) * (x1 - x0) / (y1 - y0)).clamp(0.05, 5.0);
            (x0, y0) = (x1, y1);
            x1 = x2;
            y1 = mean(days, x1);
        }
        println!(
            "{days:>3} days: intensity {x1:.3} gives {y1:.2} (target {target:.2}); at 0.05: {:.2}",
            mean(days, 0.05)
        );
    }
}

/// Shares the crate documentation quotes, and the layers of docs/layers.md as of the window's end.
fn report(s: &Sample) {
    let by = s.by_person();
    let end = s.run.cfg.end.as_millisecond();
    let n = by.len() as f64;
    let count = |f: &dyn Fn(&Vec<&Event>) -> bool| by.values().filter(|e| f(e)).count();
    let has = |evs: &Vec<&Event>, ty: &str| evs.iter().any(|e| e.ty == ty);
    let followers = count(&|e| has(e, "follow"));
    let lead_followers = count(&|e| has(e, "follow") && has(e, "lead_form"));
    let leaders = count(&|e| has(e, "lead_form"));
    let multi = count(&|e| {
        let ch: HashSet<&str> = e
            .iter()
            .filter(|e| e.ty == "lead_form")
            .map(|e| e.prop("channel"))
            .collect();
        ch.len() >= 2
    });
    let buyers = count(&|e| has(e, "order"));
    let repeat = count(&|e| e.iter().filter(|e| e.ty == "order").count() >= 2);
    let wecom = count(&|e| e.iter().any(|e| e.id("wecom_external_id").is_some()));
    let phone_people: usize = s
        .truth
        .iter()
        .filter(|((k, _), _)| k == "phone")
        .map(|(_, p)| p.len())
        .sum();
    let sharing: usize = s
        .truth
        .iter()
        .filter(|((k, _), p)| k == "phone" && p.len() > 1)
        .map(|(_, p)| p.len())
        .sum();
    println!(
        "follow {:.1}%; leads: {:.1}% of followers, {leaders} people, {multi} with ≥2 channels; buyers {:.2}% ({repeat} repeat); WeCom {:.1}%; phones: {phone_people} people, {:.2}% share",
        100.0 * followers as f64 / n,
        100.0 * lead_followers as f64 / followers as f64,
        100.0 * buyers as f64 / n,
        100.0 * wecom as f64 / n,
        100.0 * sharing as f64 / phone_people as f64,
    );
    let weight = |e: &Event| -> i64 {
        match e.ty.as_str() {
            "video_like" | "homepage_visit" | "live_enter" => 1,
            "video_comment" | "video_share" | "coupon_claim" => 3,
            "live_watch" => e.props["duration_s"].as_i64().unwrap() / 300,
            "live_comment" | "group_message" => 2,
            "private_message_in" | "subscribe" => 4,
            "store_visit" => 5,
            _ => 0,
        }
    };
    let mut layers = [0usize; 4];
    for evs in by.values() {
        let mut follows = false;
        let mut subscribed = false;
        let mut groups: HashSet<&str> = HashSet::new();
        let (mut eng, mut orders) = (0, 0);
        for e in evs {
            match e.ty.as_str() {
                "follow" => follows = true,
                "unfollow" => follows = false,
                "subscribe" => subscribed = true,
                "unsubscribe" => subscribed = false,
                "group_join" => {
                    groups.insert(e.prop("group_id"));
                }
                "group_leave" => {
                    groups.remove(e.prop("group_id"));
                }
                "order" if e.ts > end - 180 * 86_400_000 => orders += 1,
                _ => {}
            }
            if e.ts > end - 30 * 86_400_000 {
                eng += weight(e);
            }
        }
        let in_group = !groups.is_empty();
        let layer = if !follows {
            0
        } else if orders >= 2 || (orders >= 1 && eng >= 10) || (in_group && eng >= 20) {
            3
        } else if eng >= 10 || subscribed || in_group {
            2
        } else {
            1
        };
        layers[layer] += 1;
    }
    println!("layers at the end (Potential, Passerby, Favorable, TrueLove): {layers:?}");
}

/// Writes a small sample to the temp directory for eyeballing.
#[test]
#[ignore]
fn peek() {
    let r = run(config(3_000, 90, 42));
    let dir = std::env::temp_dir();
    std::fs::write(dir.join("siyu-peek.jsonl"), &r.out).unwrap();
    std::fs::write(dir.join("siyu-peek-truth.csv"), &r.truth).unwrap();
}
