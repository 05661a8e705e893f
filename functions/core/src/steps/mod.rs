//! The six pipeline steps (one module each) and what they share: the wire
//! shapes Step Functions passes (`wire`), the journal that records a step's
//! progress in the store, the notification e-mails, and the handlers the
//! Lambda binaries serve and the sandbox's activity workers dispatch to, and
//! the event-driven waits (`wake`).

pub mod cleanup;
pub mod create_image;
pub mod create_models;
pub mod finalize;
pub mod handler;
mod journal;
mod notify;
pub mod replace_instances;
pub mod stop_server;
pub mod validate;
pub mod wake;
mod wire;

pub use handler::run;
pub use journal::Journal;
pub use wire::{CaughtError, Poll, StateWithExecution, StepInput};

pub(crate) use journal::check_cancel;
pub(crate) use notify::{notify, Notice};

#[cfg(any(test, feature = "test-util"))]
pub mod testkit;
