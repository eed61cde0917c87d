//! Leads to teams (线索分配) and fan groups (粉丝群), as plain Rust without I/O: what a lead's
//! states are and which changes are allowed ([`state`]), agents' working hours ([`hours`]),
//! which agent a team gives a lead to and why the others were passed over ([`route`]), when a
//! lead is overdue or goes back to the pool ([`sla`]), which group a fan is invited to
//! ([`groups`]), and the texts of the tasks routing leaves people ([`tasks`]).
//!
//! The point of it all is the white paper's: a person found three times (a live form, an ad
//! form, a private message) is **one lead with one owner**, followed up once and in time. The
//! lead worker in `siyu-app` reads the store and the live engine, asks these functions, and
//! commits what they decide in one transaction; keeping the decisions here, pure, is what
//! lets tests state each rule exactly and the benchmark route 100,000 leads without a disk.

pub mod groups;
pub mod hours;
pub mod route;
pub mod sla;
pub mod state;
pub mod tasks;

pub use hours::Hours;
pub use route::{Agent, Pass, Router, Strategy};
pub use state::{FollowUp, LeadState};

/// A refusal of bad input: the field it is about, a stable code and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct LeadError {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl LeadError {
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> LeadError {
        LeadError {
            field,
            code,
            message: message.into(),
        }
    }
}
