//! Custodian's domain: the rules of a GDPR Data Processing Agreement as types.
//!
//! This crate does no I/O: no clock, no randomness, no files, no network. Everything that
//! needs the outside world (the current time, random ids, keys) is handed in by the caller,
//! so every rule here is a plain function that a unit test can exercise.

pub mod account;
pub mod audit;
pub mod category;
pub mod controller;
pub mod deadline;
pub mod dsr;
pub mod error;
pub mod hex;
pub mod ids;
pub mod json;
pub mod lookup;
mod name;
pub mod operation;
pub mod pan;
pub mod policy;
pub mod principal;
pub mod purpose;
pub mod record;
pub mod region;
pub mod rfc3339;
#[cfg(feature = "openapi")]
pub mod schema;

pub use error::ValidationError;
