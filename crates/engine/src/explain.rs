//! Why a fan is in its layer, in the numbers that decided it.
//!
//! [`checks`] walks the layer rules in [`layer_of`]'s order (DESIGN.md: the first rule that
//! holds) with the fan's [`Features`] and the tenant's [`Rules`], and keeps every comparison it
//! made as a [`Clause`]: the feature, its value, the comparison, the threshold, and whether it
//! held. A rule that failed keeps each of its alternatives up to the clause that failed it; the
//! rule that held keeps the alternative that held. [`render`] writes the `why` text from those
//! clauses and nothing else, and the JSON answer carries the clauses themselves, so the words and
//! the numbers come from the same values:
//!
//! ```text
//! 路人粉丝 Passerby: follows; not 真爱粉丝 (orders_180d = 1 < 2, orders_180d = 1 ≥ 1 but
//! engagement_30d = 4 < 10, not in a fan group); not 好感粉丝 (engagement_30d = 4 < 10, not
//! subscribed, not in a fan group); engagement_30d: 1 × private_message_in = 4
//! ```
//!
//! A property test holds the invariant for random fans, rules and instants: every clause's value
//! is the fan's feature, every `held` is the comparison, the checks end at exactly the layer
//! [`layer_of`] returns, and the text parses back into the same clauses.
//!
//! [`layer_of`]: crate::layers::layer_of

use serde::Serialize;
use siyu_domain::Layer;

use crate::layers::{EngagementPart, Features};
use crate::rules::Rules;

/// A feature the layer rules read; serialized as its field name in [`Features`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Feature {
    #[serde(rename = "follows")]
    Follows,
    #[serde(rename = "subscribed")]
    Subscribed,
    #[serde(rename = "in_group")]
    InGroup,
    #[serde(rename = "engagement_30d")]
    Engagement,
    #[serde(rename = "orders_180d")]
    Orders,
}

/// How the text reads a yes/no feature: (feature, when true, when false). Counts read as
/// `name = value ≥ threshold` instead (see [`Feature::name`]).
const FLAG_WORDS: [(Feature, &str, &str); 3] = [
    (Feature::Follows, "follows", "does not follow"),
    (Feature::Subscribed, "subscribed", "not subscribed"),
    (Feature::InGroup, "in a fan group", "not in a fan group"),
];

impl Feature {
    /// The feature's value for one fan.
    pub fn value(self, f: &Features) -> Value {
        match self {
            Feature::Follows => Value::Flag(f.follows),
            Feature::Subscribed => Value::Flag(f.subscribed),
            Feature::InGroup => Value::Flag(f.in_group),
            Feature::Engagement => Value::Count(f.engagement_30d),
            Feature::Orders => Value::Count(f.orders_180d),
        }
    }

    /// The name in the text, with the tenant's window: `engagement_30d`, `orders_180d` (a rules
    /// file with a 14-day engagement window reads `engagement_14d`).
    pub fn name(self, r: &Rules) -> String {
        match self {
            Feature::Follows => "follows".into(),
            Feature::Subscribed => "subscribed".into(),
            Feature::InGroup => "in_group".into(),
            Feature::Engagement => format!("engagement_{}d", r.engagement_window_days),
            Feature::Orders => format!("orders_{}d", r.orders_window_days),
        }
    }

    /// How the text says a yes/no feature's value; `None` for counts.
    pub fn words(self, on: bool) -> Option<&'static str> {
        FLAG_WORDS
            .iter()
            .find(|w| w.0 == self)
            .map(|w| if on { w.1 } else { w.2 })
    }
}

/// A feature's value or a rule's threshold: JSON `true`/`false` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Value {
    Flag(bool),
    Count(u32),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Flag(b) => b.fmt(f),
            Value::Count(n) => n.fmt(f),
        }
    }
}

/// The comparison a rule makes: `eq` for yes/no features, `ge` (at least) for counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ge,
}

impl Op {
    pub fn holds(self, value: Value, threshold: Value) -> bool {
        match self {
            Op::Eq => value == threshold,
            Op::Ge => value >= threshold,
        }
    }
}

/// One comparison a layer rule made with one of the fan's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Clause {
    pub feature: Feature,
    /// The fan's value of `feature`.
    pub value: Value,
    pub op: Op,
    pub threshold: Value,
    /// `op` applied to `value` and `threshold`.
    pub held: bool,
}

/// One layer's rule, as the fan's features met it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The layer the rule puts a fan in.
    pub layer: Layer,
    pub held: bool,
    /// Alternatives (any one suffices), each a list of clauses (all must hold), as far as they
    /// were evaluated: a failed rule lists every alternative, each ending at its first failed
    /// clause; a rule that held lists only the alternative that held. 路人粉丝's rule is
    /// "otherwise": one alternative with no clause.
    pub any_of: Vec<Vec<Clause>>,
}

/// A rule's comparison before it meets a fan.
#[derive(Clone, Copy)]
struct Cond {
    feature: Feature,
    op: Op,
    threshold: Value,
}

fn is(feature: Feature, on: bool) -> Cond {
    Cond {
        feature,
        op: Op::Eq,
        threshold: Value::Flag(on),
    }
}

fn at_least(feature: Feature, n: u32) -> Cond {
    Cond {
        feature,
        op: Op::Ge,
        threshold: Value::Count(n),
    }
}

/// DESIGN.md's layer rules with the tenant's thresholds, in the order [`layer_of`] tries them.
///
/// [`layer_of`]: crate::layers::layer_of
fn rules_in_order(r: &Rules) -> [(Layer, Vec<Vec<Cond>>); 4] {
    use Feature::*;
    let t = &r.true_love;
    [
        (Layer::Potential, vec![vec![is(Follows, false)]]),
        (
            Layer::TrueLove,
            vec![
                vec![at_least(Orders, t.orders)],
                vec![
                    at_least(Orders, t.orders_with_engagement),
                    at_least(Engagement, t.engagement_with_order),
                ],
                vec![is(InGroup, true), at_least(Engagement, t.group_engagement)],
            ],
        ),
        (
            Layer::Favorable,
            vec![
                vec![at_least(Engagement, r.favorable.engagement)],
                vec![is(Subscribed, true)],
                vec![is(InGroup, true)],
            ],
        ),
        (Layer::Passerby, vec![vec![]]),
    ]
}

/// The layer rules as `f` met them, down to the first that held (see [`Check`]).
pub fn checks(f: &Features, r: &Rules) -> Vec<Check> {
    let mut out = Vec::new();
    for (layer, alternatives) in rules_in_order(r) {
        let mut tried = Vec::new();
        let mut held = false;
        for conds in alternatives {
            let mut clauses = Vec::new();
            let mut all = true;
            for c in conds {
                let value = c.feature.value(f);
                let ok = c.op.holds(value, c.threshold);
                clauses.push(Clause {
                    feature: c.feature,
                    value,
                    op: c.op,
                    threshold: c.threshold,
                    held: ok,
                });
                if !ok {
                    all = false;
                    break;
                }
            }
            if all {
                tried = vec![clauses];
                held = true;
                break;
            }
            tried.push(clauses);
        }
        out.push(Check {
            layer,
            held,
            any_of: tried,
        });
        if held {
            break;
        }
    }
    out
}

/// The layer the checks end at: the first rule that held.
pub fn layer_of_checks(checks: &[Check]) -> Option<Layer> {
    checks.iter().find(|c| c.held).map(|c| c.layer)
}

/// One clause in words: `orders_180d = 1 < 2`, `engagement_30d = 12 ≥ 10`, `not subscribed`.
fn clause_text(c: &Clause, r: &Rules) -> String {
    if let Value::Flag(on) = c.value
        && let Some(words) = c.feature.words(on)
    {
        return words.to_string();
    }
    let rel = match (c.op, c.held) {
        (Op::Ge, true) => "≥",
        (Op::Ge, false) => "<",
        (Op::Eq, true) => "=",
        (Op::Eq, false) => "≠",
    };
    format!("{} = {} {rel} {}", c.feature.name(r), c.value, c.threshold)
}

/// One alternative in words: clauses that held joined by `and`, the one that failed after `but`.
fn alternative_text(clauses: &[Clause], r: &Rules) -> String {
    let mut s = String::new();
    for (i, c) in clauses.iter().enumerate() {
        if i > 0 {
            s.push_str(if c.held { " and " } else { " but " });
        }
        s.push_str(&clause_text(c, r));
    }
    s
}

/// The `why` text, from the checks and the engagement breakdown only: the layer the checks
/// end at, `{中文} {English}: `, then each rule in order — the one that held as its clauses, one that
/// failed as `not {中文} (alternative, alternative, ...)` (a rule of one single comparison, like
/// 潜在粉丝's, as that comparison alone) — then, when a clause read engagement, what it is
/// made of, biggest first.
pub fn render(checks: &[Check], r: &Rules, parts: &[EngagementPart]) -> String {
    let mut segments: Vec<String> = Vec::new();
    for check in checks {
        if check.held {
            let text = check
                .any_of
                .iter()
                .map(|a| alternative_text(a, r))
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            if !text.is_empty() {
                segments.push(text);
            }
        } else {
            match check.any_of.as_slice() {
                [single] if single.len() == 1 => segments.push(clause_text(&single[0], r)),
                alternatives => segments.push(format!(
                    "not {} ({})",
                    check.layer.label_zh(),
                    alternatives
                        .iter()
                        .map(|a| alternative_text(a, r))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
    let reads_engagement = checks
        .iter()
        .flat_map(|c| c.any_of.iter().flatten())
        .any(|c| c.feature == Feature::Engagement);
    if reads_engagement && !parts.is_empty() {
        let list: Vec<String> = parts
            .iter()
            .map(|p| format!("{} × {} = {}", p.count, p.r#type, p.points))
            .collect();
        segments.push(format!(
            "{}: {}",
            Feature::Engagement.name(r),
            list.join(", ")
        ));
    }
    match layer_of_checks(checks) {
        Some(layer) => format!(
            "{} {}: {}",
            layer.label_zh(),
            layer.label_en(),
            segments.join("; ")
        ),
        None => segments.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantEngine;
    use crate::identity::FanId;
    use crate::layers::layer_of;
    use proptest::prelude::*;
    use siyu_domain::time::{MS_PER_DAY, format_rfc3339, parse_rfc3339};
    use siyu_domain::{IdentityKind, parse_event};

    const HOUR: i64 = 3_600_000;

    fn base() -> i64 {
        parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    #[test]
    fn a_passerby_with_one_order_is_explained_by_its_order() {
        let f = Features {
            follows: true,
            subscribed: false,
            in_group: false,
            engagement_30d: 4,
            orders_180d: 1,
        };
        let r = Rules::default();
        let checks = checks(&f, &r);
        let parts = [EngagementPart {
            r#type: "private_message_in",
            count: 1,
            points: 4,
        }];
        assert_eq!(layer_of(&f, &r), Layer::Passerby);
        assert_eq!(layer_of_checks(&checks), Some(Layer::Passerby));
        assert_eq!(
            render(&checks, &r, &parts),
            "路人粉丝 Passerby: follows; \
             not 真爱粉丝 (orders_180d = 1 < 2, orders_180d = 1 ≥ 1 but engagement_30d = 4 < 10, not in a fan group); \
             not 好感粉丝 (engagement_30d = 4 < 10, not subscribed, not in a fan group); \
             engagement_30d: 1 × private_message_in = 4"
        );
        let json = serde_json::to_value(&checks).unwrap();
        assert_eq!(
            json[1]["any_of"][1],
            serde_json::json!([
                {"feature": "orders_180d", "value": 1, "op": "ge", "threshold": 1, "held": true},
                {"feature": "engagement_30d", "value": 4, "op": "ge", "threshold": 10, "held": false},
            ])
        );
        assert_eq!(
            json[0],
            serde_json::json!({"layer": "potential", "held": false, "any_of": [[
                {"feature": "follows", "value": true, "op": "eq", "threshold": false, "held": false}
            ]]})
        );
        assert_eq!(
            json[3],
            serde_json::json!({"layer": "passerby", "held": true, "any_of": [[]]})
        );
    }

    #[test]
    fn each_layer_names_the_rule_that_held() {
        let r = Rules::default();
        let text = |f: Features| render(&checks(&f, &r), &r, &[]);
        assert_eq!(
            text(Features::default()),
            "潜在粉丝 Potential: does not follow"
        );
        let follows = Features {
            follows: true,
            ..Features::default()
        };
        assert_eq!(
            text(Features {
                orders_180d: 2,
                ..follows
            }),
            "真爱粉丝 True love: follows; orders_180d = 2 ≥ 2"
        );
        assert_eq!(
            text(Features {
                in_group: true,
                engagement_30d: 20,
                ..follows
            }),
            "真爱粉丝 True love: follows; in a fan group and engagement_30d = 20 ≥ 20"
        );
        assert_eq!(
            text(Features {
                subscribed: true,
                ..follows
            }),
            "好感粉丝 Favorable: follows; not 真爱粉丝 (orders_180d = 0 < 2, orders_180d = 0 < 1, \
             not in a fan group); subscribed"
        );
        let windows = Rules {
            engagement_window_days: 14,
            ..Rules::default()
        };
        let f = Features {
            engagement_30d: 3,
            ..follows
        };
        assert!(
            render(&checks(&f, &windows), &windows, &[]).contains("engagement_14d = 3 < 10"),
            "the text names the tenant's window"
        );
    }

    /// A clause read back from the text: feature, value, and for counts (relation, threshold).
    #[derive(Debug, PartialEq)]
    struct Read {
        feature: Feature,
        value: Value,
        count: Option<(&'static str, u32)>,
        /// The word before it: `and`, `but`, or none (first in its alternative).
        joiner: Option<&'static str>,
    }

    fn read_clause(s: &str, r: &Rules, joiner: Option<&'static str>) -> Read {
        for f in [Feature::Follows, Feature::Subscribed, Feature::InGroup] {
            for on in [true, false] {
                if f.words(on) == Some(s) {
                    return Read {
                        feature: f,
                        value: Value::Flag(on),
                        count: None,
                        joiner,
                    };
                }
            }
        }
        for f in [Feature::Engagement, Feature::Orders] {
            if let Some(rest) = s.strip_prefix(&format!("{} = ", f.name(r))) {
                let mut w = rest.split(' ');
                let (v, rel, t) = (w.next(), w.next(), w.next());
                let rel = match rel {
                    Some("≥") => "≥",
                    Some("<") => "<",
                    other => panic!("relation {other:?} in {s:?}"),
                };
                return Read {
                    feature: f,
                    value: Value::Count(v.unwrap().parse().unwrap()),
                    count: Some((rel, t.unwrap().parse().unwrap())),
                    joiner,
                };
            }
        }
        panic!("not a clause: {s:?}")
    }

    fn read_alternative(s: &str, r: &Rules) -> Vec<Read> {
        let mut out = Vec::new();
        let mut joiner = None;
        let mut rest = s;
        loop {
            let next = [(" and ", "and"), (" but ", "but")]
                .iter()
                .filter_map(|(sep, word)| rest.find(sep).map(|i| (i, *sep, *word)))
                .min();
            match next {
                Some((i, sep, word)) => {
                    out.push(read_clause(&rest[..i], r, joiner));
                    joiner = Some(word);
                    rest = &rest[i + sep.len()..];
                }
                None => {
                    out.push(read_clause(rest, r, joiner));
                    return out;
                }
            }
        }
    }

    /// Reads a `why` text back: the layer, each rule's (failed?, layer named, alternatives),
    /// and the engagement breakdown's (count, type, points).
    #[allow(clippy::type_complexity)]
    fn read_why(
        why: &str,
        r: &Rules,
    ) -> (
        Layer,
        Vec<(bool, Option<Layer>, Vec<Vec<Read>>)>,
        Vec<(u32, String, u32)>,
    ) {
        let (head, body) = why.split_once(": ").unwrap();
        let (zh, en) = head.split_once(' ').unwrap();
        let layer: Layer = zh.parse().unwrap();
        assert_eq!(en, layer.label_en(), "{why}");
        let mut rules = Vec::new();
        let mut parts = Vec::new();
        let breakdown = format!("{}: ", Feature::Engagement.name(r));
        for seg in body.split("; ") {
            if let Some(list) = seg.strip_prefix(&breakdown) {
                for p in list.split(", ") {
                    let (count, rest) = p.split_once(" × ").unwrap();
                    let (ty, points) = rest.split_once(" = ").unwrap();
                    parts.push((
                        count.parse().unwrap(),
                        ty.to_string(),
                        points.parse().unwrap(),
                    ));
                }
            } else if let Some(rest) = seg.strip_prefix("not ") {
                match rest.split_once(" (") {
                    Some((zh, alts)) if zh.parse::<Layer>().is_ok() => {
                        let alts = alts.strip_suffix(')').unwrap();
                        rules.push((
                            true,
                            zh.parse().ok(),
                            alts.split(", ").map(|a| read_alternative(a, r)).collect(),
                        ));
                    }
                    _ => rules.push((false, None, vec![read_alternative(seg, r)])),
                }
            } else {
                rules.push((false, None, vec![read_alternative(seg, r)]));
            }
        }
        (layer, rules, parts)
    }

    /// A comparison a rule makes: (feature, op, threshold).
    type Spec = (Feature, Op, Value);

    /// DESIGN.md's rules, written out again here as the test's own statement of them:
    /// (layer, alternatives of comparisons).
    fn design(r: &Rules) -> Vec<(Layer, Vec<Vec<Spec>>)> {
        use Feature::*;
        use Value::{Count, Flag};
        let t = &r.true_love;
        vec![
            (Layer::Potential, vec![vec![(Follows, Op::Eq, Flag(false))]]),
            (
                Layer::TrueLove,
                vec![
                    vec![(Orders, Op::Ge, Count(t.orders))],
                    vec![
                        (Orders, Op::Ge, Count(t.orders_with_engagement)),
                        (Engagement, Op::Ge, Count(t.engagement_with_order)),
                    ],
                    vec![
                        (InGroup, Op::Eq, Flag(true)),
                        (Engagement, Op::Ge, Count(t.group_engagement)),
                    ],
                ],
            ),
            (
                Layer::Favorable,
                vec![
                    vec![(Engagement, Op::Ge, Count(r.favorable.engagement))],
                    vec![(Subscribed, Op::Eq, Flag(true))],
                    vec![(InGroup, Op::Eq, Flag(true))],
                ],
            ),
            (Layer::Passerby, vec![vec![]]),
        ]
    }

    /// Every clause is the fan's feature compared as the rule says, and the checks are the
    /// rules in order, failing until the one that puts the fan in `layer`.
    fn assert_checks_decide(checks: &[Check], f: &Features, r: &Rules, layer: Layer) {
        let spec = design(r);
        assert!(!checks.is_empty() && checks.len() <= spec.len());
        for (i, (check, (l, alternatives))) in checks.iter().zip(&spec).enumerate() {
            assert_eq!(check.layer, *l);
            let last = i + 1 == checks.len();
            assert_eq!(check.held, last, "only the last check holds: {checks:?}");
            for c in check.any_of.iter().flatten() {
                assert_eq!(c.value, c.feature.value(f), "{c:?} of {f:?}");
                let held = match (c.value, c.threshold) {
                    (Value::Count(v), Value::Count(t)) if c.op == Op::Ge => v >= t,
                    (Value::Flag(v), Value::Flag(t)) if c.op == Op::Eq => v == t,
                    _ => panic!("an op on the wrong kind of value: {c:?}"),
                };
                assert_eq!(c.held, held, "{c:?}");
            }
            let same = |clauses: &[Clause], conds: &[Spec]| {
                clauses.len() <= conds.len()
                    && clauses
                        .iter()
                        .zip(conds)
                        .all(|(c, d)| (c.feature, c.op, c.threshold) == *d)
            };
            if check.held {
                let [alt] = check.any_of.as_slice() else {
                    panic!("a rule that held shows the alternative that held: {check:?}")
                };
                assert!(alt.iter().all(|c| c.held));
                assert!(
                    alternatives
                        .iter()
                        .any(|conds| conds.len() == alt.len() && same(alt, conds)),
                    "{alt:?} is one of the rule's alternatives"
                );
            } else {
                assert_eq!(check.any_of.len(), alternatives.len(), "{check:?}");
                for (alt, conds) in check.any_of.iter().zip(alternatives) {
                    assert!(same(alt, conds), "{alt:?} vs {conds:?}");
                    let (failed, before) = alt.split_last().expect("a failed alternative");
                    assert!(!failed.held && before.iter().all(|c| c.held), "{alt:?}");
                }
            }
        }
        assert_eq!(layer_of_checks(checks), Some(layer));
    }

    /// The text says exactly the checks: the same rules, alternatives, features, values and
    /// outcomes, and an engagement breakdown that adds up to the feature.
    fn assert_text_is_checks(x: &crate::Explanation, r: &Rules) {
        let (layer, rules, parts) = read_why(&x.why, r);
        assert_eq!(layer, x.layer, "{}", x.why);
        let shown: Vec<&Check> = x
            .checks
            .iter()
            .filter(|c| !(c.held && c.any_of.iter().all(Vec::is_empty)))
            .collect();
        assert_eq!(rules.len(), shown.len(), "{}", x.why);
        for ((grouped, named, alts), check) in rules.iter().zip(shown) {
            if *grouped {
                assert_eq!((*named, check.held), (Some(check.layer), false));
            }
            assert_eq!(alts.len(), check.any_of.len(), "{}", x.why);
            for (read, clauses) in alts.iter().zip(&check.any_of) {
                assert_eq!(read.len(), clauses.len(), "{}", x.why);
                for (j, (rd, c)) in read.iter().zip(clauses).enumerate() {
                    assert_eq!((rd.feature, rd.value), (c.feature, c.value), "{}", x.why);
                    if let Some((rel, t)) = rd.count {
                        assert_eq!(Value::Count(t), c.threshold, "{}", x.why);
                        assert_eq!(rel == "≥", c.held, "{}", x.why);
                    }
                    if j > 0 {
                        let word = if c.held { "and" } else { "but" };
                        assert_eq!(rd.joiner, Some(word), "{}", x.why);
                    }
                }
            }
        }
        let reads_engagement = x
            .checks
            .iter()
            .flat_map(|c| c.any_of.iter().flatten())
            .any(|c| c.feature == Feature::Engagement);
        let expected: Vec<(u32, String, u32)> = if reads_engagement {
            x.engagement
                .iter()
                .map(|p| (p.count, p.r#type.to_string(), p.points))
                .collect()
        } else {
            Vec::new()
        };
        assert_eq!(parts, expected, "{}", x.why);
        let total: u32 = x.engagement.iter().map(|p| p.points).sum();
        assert_eq!(total, x.features.engagement_30d, "{}", x.why);
    }

    /// (type, props) of the generated events; `{g}` is a group, `{d}` a duration.
    const TYPES: [(&str, &str); 16] = [
        ("follow", ""),
        ("unfollow", ""),
        ("subscribe", ""),
        ("unsubscribe", ""),
        ("order", r#"{"order_id":"o","amount":9.9}"#),
        ("group_join", r#"{"group_id":"{g}"}"#),
        ("group_leave", r#"{"group_id":"{g}"}"#),
        ("live_watch", r#"{"duration_s":{d}}"#),
        ("private_message_in", ""),
        ("video_like", ""),
        ("video_comment", ""),
        ("group_message", r#"{"group_id":"{g}"}"#),
        ("x_page", ""),
        ("x_identify", ""),
        ("video_view", ""),
        ("store_visit", ""),
    ];

    fn rules_strategy() -> impl Strategy<Value = Rules> {
        (
            (1u32..200, 1u32..400, 1u32..900),
            proptest::array::uniform24(0u32..6),
            (0u32..4, 0u32..3, 0u32..25, 0u32..40, 0u32..25),
        )
            .prop_map(|((ew, ow, lw), weights, (o, owe, ewo, ge, fe))| Rules {
                engagement_window_days: ew,
                orders_window_days: ow,
                live_watch_seconds_per_point: lw,
                weights,
                true_love: crate::rules::TrueLove {
                    orders: o,
                    orders_with_engagement: owe,
                    engagement_with_order: ewo,
                    group_engagement: ge,
                },
                favorable: crate::rules::Favorable { engagement: fe },
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// For random fans, rules and instants, the explanation is the numbers that decided
        /// the layer: every clause is the fan's feature compared as the rule says, the clauses
        /// end at `layer_of`'s layer, the text reads back as the clauses, and the features are
        /// the ones the live state computes independently. The timeline is the fan's latest
        /// events by event time, newest first, each with its own type name.
        #[test]
        fn explanations_are_the_numbers_that_decided(
            // (person, which identities, type, day, hour, group, duration)
            evs in proptest::collection::vec(
                (0u8..3, 0u8..8, 0usize..16, 0i64..300, 0i64..3, 0u8..2, 0u32..2000),
                1..80,
            ),
            at_day in -2i64..320,
            at_ms in 0i64..MS_PER_DAY,
            timeline_len in 0usize..12,
            rules in rules_strategy(),
        ) {
            let mut e = TenantEngine::new();
            e.set_rules(1, rules.clone());
            // (identity kind, value) of each event's first identity, its time and type.
            let mut made: Vec<(IdentityKind, String, i64, &str)> = Vec::new();
            for (seq, (who, ids, ty, day, hour, group, dur)) in evs.iter().copied().enumerate() {
                let (name, props) = TYPES[ty];
                let props = if props.is_empty() { "{}".to_string() } else {
                    props.replace("{g}", &format!("g{group}")).replace("{d}", &dur.to_string())
                };
                let (identities, first) = match ids {
                    0..=5 => (format!(r#"{{"douyin_open_id":"f{who}"}}"#),
                              (IdentityKind::DouyinOpenId, format!("f{who}"))),
                    6 => (format!(r#"{{"user_id":"u{who}"}}"#),
                          (IdentityKind::UserId, format!("u{who}"))),
                    _ => (format!(r#"{{"douyin_open_id":"f{who}","user_id":"u{who}"}}"#),
                          (IdentityKind::DouyinOpenId, format!("f{who}"))),
                };
                let ts = base() + day * MS_PER_DAY + hour * HOUR;
                let domain = if name.starts_with("x_") { r#","domain":"private""# } else { "" };
                let text = format!(
                    r#"{{"id":"{seq}","type":"{name}","ts":"{}","identities":{identities},"props":{props}{domain}}}"#,
                    format_rfc3339(ts)
                );
                let event = parse_event(&text, base() + 10_000 * MS_PER_DAY).unwrap();
                e.apply(seq as i64 + 1, &event);
                made.push((first.0, first.1, ts, name));
            }
            let as_of = base() + at_day * MS_PER_DAY + at_ms;
            let fan_of = |kind: IdentityKind, value: &str| -> Option<FanId> {
                e.identities().lookup(kind, value).first().copied()
            };
            let mut fans: Vec<FanId> = made.iter().filter_map(|m| fan_of(m.0, &m.1)).collect();
            fans.sort();
            fans.dedup();
            for fan in fans {
                let x = e.explain(fan, as_of, timeline_len);
                let independent = e.features_of(fan, as_of);
                prop_assert_eq!(x.as_ref().map(|x| x.features), independent);
                let Some(x) = x else { continue };
                prop_assert_eq!(x.layer, layer_of(&x.features, &rules));
                assert_checks_decide(&x.checks, &x.features, &rules, x.layer);
                assert_text_is_checks(&x, &rules);

                let mut expected: Vec<(i64, usize, &str)> = made
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.2 <= as_of && fan_of(m.0, &m.1) == Some(fan))
                    .map(|(i, m)| (m.2, i, m.3))
                    .collect();
                expected.sort_by_key(|w| std::cmp::Reverse((w.0, w.1)));
                expected.truncate(timeline_len);
                let got: Vec<(i64, &str)> =
                    x.timeline.iter().map(|t| (t.ts, t.r#type.as_str())).collect();
                let want: Vec<(i64, &str)> = expected.iter().map(|w| (w.0, w.2)).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
