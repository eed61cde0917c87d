//! Siyu's domain: what an interaction *is*, before anything stores or counts it.
//!
//! Every other crate receives events already parsed into these types, so nothing after ingest
//! re-checks a phone number or an event type ("parse, don't validate"). The crate is plain Rust:
//! no I/O, no web framework, no SQL driver.
//!
//! # Layout
//! - [`audience`]: the segment language (which fans a step is for), parsed with positioned errors.
//! - [`domain`]: the three domains 公域 / 商域 / 私域 and the one table of their labels.
//! - [`event_type`]: the event catalogue of docs/events.md and custom `x_` events.
//! - [`identity`]: identity kinds and value normalization (phones to E.164, emails lowercased).
//! - [`event`]: the native event model and its parser, with errors that name the field.
//! - [`layer`]: the growth path 潜在粉丝 → 路人粉丝 → 好感粉丝 → 真爱粉丝 and its labels.
//! - [`segment`]: Segment/RudderStack messages mapped onto native events.
//! - [`suggest`]: did-you-mean hints for mistyped names, shared by every parser.
//! - [`douyin`]: Douyin Open Platform webhook deliveries mapped onto native events.
//! - [`oceanengine`]: Ocean Engine (巨量引擎) leads mapped onto `lead_form` events.
//! - [`time`]: event time as milliseconds since the Unix epoch, and RFC 3339 in and out.
//! - [`trigger`]: the one ordered stream of what journeys react to, and its positions.

pub mod audience;
pub mod domain;
pub mod douyin;
pub mod event;
pub mod event_type;
pub mod identity;
pub mod layer;
pub mod oceanengine;
pub mod segment;
pub mod suggest;
pub mod time;
pub mod trigger;

pub use domain::Domain;
pub use event::{ErrorCode, Event, EventError, EventId, Props, TimeBounds, parse_event};
pub use event_type::{CustomName, EventType};
pub use identity::{Identities, Identity, IdentityError, IdentityKind};
pub use layer::Layer;
pub use time::Millis;
