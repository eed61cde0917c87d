//! The run state machine (filled in below).
