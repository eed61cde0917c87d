//! Triggers: what journeys, lead routing and the console react to, in one ordered stream per
//! tenant.
//!
//! A trigger is an event taken in, or something the engine derived from the log: a fan's layer
//! changed, a fan entered or left a saved segment, a tag was added or removed. Each has a
//! **position** in the tenant's stream: an `i64` that only grows in the order triggers become
//! visible, so a consumer that remembers the last position it handled (its cursor) misses
//! nothing and sees nothing twice.
//!
//! Positions are laid out by the event log: the event with sequence number `seq` sits at
//! `seq × 2²⁴` ([`event_position`]), and what the engine derived once it had applied the events
//! up to `seq` sits in the `2²⁴ − 1` positions after it. So an event always comes before what
//! it caused, and the stream is the event log and the derived logs interleaved without storing
//! the events a second time.

use serde::Serialize;

use crate::Millis;

/// Positions per event: derived triggers recorded after event `seq` take the positions between
/// `event_position(seq)` and `event_position(seq + 1)`.
pub const PER_EVENT: i64 = 1 << 24;

/// The stream position of the event with sequence number `seq`.
pub fn event_position(seq: i64) -> i64 {
    seq.saturating_mul(PER_EVENT)
}

/// The last event at or before a position: an event's own position maps to itself.
pub fn seq_at(position: i64) -> i64 {
    position.div_euclid(PER_EVENT)
}

/// What made a derived trigger happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// An event (its sequence number and id are on the trigger).
    Event,
    /// A layer window slid with no event: the fan cooled down.
    Decay,
    /// Time passed: a segment's window slid or a layer decayed.
    Time,
    /// An operator's identity decision moved events between fans.
    Identity,
    /// New layer rules were put in force.
    Rules,
    /// A tag was added or removed (a segment over tags).
    Tag,
    /// A segment was saved: its first members.
    Created,
    /// An operator set or removed a tag by hand.
    Manual,
    /// A saved segment's automatic tag followed its members.
    Segment,
}

impl Cause {
    pub const ALL: [Cause; 9] = [
        Cause::Event,
        Cause::Decay,
        Cause::Time,
        Cause::Identity,
        Cause::Rules,
        Cause::Tag,
        Cause::Created,
        Cause::Manual,
        Cause::Segment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Event => "event",
            Cause::Decay => "decay",
            Cause::Time => "time",
            Cause::Identity => "identity",
            Cause::Rules => "rules",
            Cause::Tag => "tag",
            Cause::Created => "created",
            Cause::Manual => "manual",
            Cause::Segment => "segment",
        }
    }

    /// The cause stored as `name`, if it is one.
    pub fn parse(name: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// The kinds of trigger, as named in the API (`types=` filter) and in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    Event,
    LayerChanged,
    SegmentEntered,
    SegmentExited,
    TagAdded,
    TagRemoved,
}

impl TriggerType {
    pub const ALL: [TriggerType; 6] = [
        TriggerType::Event,
        TriggerType::LayerChanged,
        TriggerType::SegmentEntered,
        TriggerType::SegmentExited,
        TriggerType::TagAdded,
        TriggerType::TagRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::Event => "event",
            TriggerType::LayerChanged => "layer_changed",
            TriggerType::SegmentEntered => "segment_entered",
            TriggerType::SegmentExited => "segment_exited",
            TriggerType::TagAdded => "tag_added",
            TriggerType::TagRemoved => "tag_removed",
        }
    }

    pub fn parse(name: &str) -> Option<TriggerType> {
        TriggerType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// A set of types as bits (`1 << index in ALL`).
    pub fn bit(self) -> u8 {
        1 << TriggerType::ALL
            .iter()
            .position(|t| *t == self)
            .unwrap_or(0)
    }
}

/// A set of trigger types; `TypeSet::ALL` when no filter is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeSet(u8);

impl TypeSet {
    pub const ALL: TypeSet = TypeSet(0b11_1111);

    pub fn of(types: impl IntoIterator<Item = TriggerType>) -> TypeSet {
        TypeSet(types.into_iter().fold(0, |bits, t| bits | t.bit()))
    }

    pub fn contains(self, t: TriggerType) -> bool {
        self.0 & t.bit() != 0
    }

    /// Parses a comma-separated list (`event,segment_entered`); on an unknown name, returns it.
    pub fn parse(list: &str) -> Result<TypeSet, String> {
        let mut set = TypeSet(0);
        for name in list.split(',').map(str::trim) {
            match TriggerType::parse(name) {
                Some(t) => set.0 |= t.bit(),
                None => return Err(name.to_string()),
            }
        }
        Ok(set)
    }
}

/// One trigger of a tenant's stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    /// Its position in the stream (see the module docs): pass it as `after` to read on.
    pub id: i64,
    /// The fan it concerns, as the fan is now (after merges); `None` only for an event whose
    /// fan is not known to the reader.
    pub fan: Option<i64>,
    /// When it happened: the event's time, or the engine's clock when it was derived (RFC 3339
    /// in JSON).
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub at: Millis,
    #[serde(flatten)]
    pub what: What,
}

/// What a trigger says, by type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum What {
    /// An event was taken in.
    Event {
        seq: i64,
        event_id: String,
        event_type: String,
    },
    /// A fan's layer changed (`from` is `None` for a new fan).
    LayerChanged {
        from: Option<crate::Layer>,
        to: crate::Layer,
        cause: Cause,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    SegmentEntered {
        segment: i64,
        cause: Cause,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    SegmentExited {
        segment: i64,
        cause: Cause,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    /// `source`: `manual`, or `segment:<id>` for a saved segment's automatic tag.
    TagAdded {
        tag: String,
        source: String,
    },
    TagRemoved {
        tag: String,
        source: String,
    },
}

impl What {
    pub fn trigger_type(&self) -> TriggerType {
        match self {
            What::Event { .. } => TriggerType::Event,
            What::LayerChanged { .. } => TriggerType::LayerChanged,
            What::SegmentEntered { .. } => TriggerType::SegmentEntered,
            What::SegmentExited { .. } => TriggerType::SegmentExited,
            What::TagAdded { .. } => TriggerType::TagAdded,
            What::TagRemoved { .. } => TriggerType::TagRemoved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_comes_before_what_was_derived_after_it() {
        assert_eq!(event_position(1), PER_EVENT);
        assert_eq!(seq_at(event_position(7)), 7);
        assert_eq!(seq_at(event_position(7) + PER_EVENT - 1), 7);
        assert_eq!(seq_at(event_position(8)), 8);
        assert_eq!(seq_at(0), 0);
        assert!(event_position(i64::MAX) > 0, "saturates, never wraps");
    }

    #[test]
    fn type_sets_parse_and_name_the_unknown() {
        let s = TypeSet::parse("event, segment_entered").unwrap();
        assert!(s.contains(TriggerType::Event));
        assert!(s.contains(TriggerType::SegmentEntered));
        assert!(!s.contains(TriggerType::TagAdded));
        assert_eq!(
            TypeSet::parse("event,segment_enterd"),
            Err("segment_enterd".into())
        );
        assert_eq!(TypeSet::parse(""), Err(String::new()));
        for t in TriggerType::ALL {
            assert!(TypeSet::ALL.contains(t));
            assert_eq!(TriggerType::parse(t.as_str()), Some(t));
        }
        for c in Cause::ALL {
            assert_eq!(Cause::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn a_trigger_serializes_flat_with_its_type() {
        let t = Trigger {
            id: event_position(3) + 1,
            fan: Some(9),
            at: 1_000,
            what: What::SegmentEntered {
                segment: 2,
                cause: Cause::Event,
                seq: Some(3),
                event_id: Some("e3".into()),
            },
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["type"], "segment_entered");
        assert_eq!(v["segment"], 2);
        assert_eq!(v["cause"], "event");
        assert_eq!(v["fan"], 9);
        assert_eq!(v["id"], 50_331_649);
    }
}
