//! Autosky Deployments core: everything the Lambda binaries, the sandbox and
//! the API share. Binaries only wire configuration and call [`steps::run`].

pub mod api;
pub mod aws;
pub mod deps;
pub mod domain;
pub mod email;
pub mod error;
pub mod lambda;
pub mod metrics;
pub mod schedule;
pub mod stage;
pub mod steps;
pub mod store;

pub use deps::Deps;
pub use error::StepError;
