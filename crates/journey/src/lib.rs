//! SOP journeys (标准化经营步骤): what a journey is, how one fan's run moves through it, and
//! the rules a step obeys. Plain Rust without I/O, so that the crate graph shows the data flow
//! — triggers → journeys → outbox → channels — and every decision is testable on its own.
//!
//! # Layout
//! - [`def`]: a journey definition (TOML) parsed into a checked [`def::Journey`]; a refused
//!   file names the line and the field.
//! - [`template`]: message texts with `{{field}}` placeholders filled from the fan.
//! - [`duration`]: `"2h"`, `"30d"`, `"09:30"`.
//! - [`policy`]: quiet hours, frequency caps, opt-out words, Douyin's private-message rules
//!   and WeCom robot limits — each a pure decision with a reason.
//! - [`variants`]: 千人千面 variant allocation by Thompson sampling (or fixed weights) and the
//!   report's intervals.
//! - [`run`]: the run state machine: given a run, its journey and what happened (entered, a
//!   timer fired, the goal reached), the next state and the effects to carry out.

pub mod def;
pub mod duration;
pub mod policy;
pub mod run;
pub mod template;
pub mod variants;

pub use def::{Journey, Step, StepKind};
