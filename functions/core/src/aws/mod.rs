//! AWS adapters: one small capability per service, returning domain-shaped
//! values and classified `StepError`s so step logic never sees SDK types.

pub mod autoscaling;
pub mod ec2;
pub mod scheduler;
pub mod ses;

pub use autoscaling::AutoScaling;
pub use ec2::Ec2;
pub use scheduler::{OneTimeSchedule, Scheduler};
pub use ses::{Email, Mailer};
