//! AWS adapters: one small capability per service, returning domain-shaped
//! values and classified `StepError`s so step logic never sees SDK types.

pub mod autoscaling;
pub mod config;
pub mod ec2;
pub mod scheduler;
pub mod ses;
pub mod stepfunctions;

pub use autoscaling::AutoScaling;
pub use ec2::Ec2;
pub use scheduler::{OneTimeSchedule, Scheduler};
pub use ses::{Email, Mailer};
pub use stepfunctions::{StepFunctions, TaskTokens};

use aws_config::SdkConfig;
use std::sync::{Arc, OnceLock};

/// One service's capability: its SDK client, built on first use (`lazy`) or
/// given ready-made (`new`, as tests do). Each service's operations are an
/// `impl` on its alias ([`Ec2`], [`AutoScaling`], [`Mailer`], [`Scheduler`]).
#[derive(Clone, Debug)]
pub struct Capability<C> {
    client: LazyClient<C>,
}

impl<C> Capability<C> {
    pub fn new(client: C) -> Self {
        Self {
            client: LazyClient::ready(client),
        }
    }

    /// The client is built from `config` when first used.
    pub fn lazy(config: Arc<SdkConfig>) -> Self {
        Self {
            client: LazyClient::lazy(config),
        }
    }
}

/// An SDK client of one service, built on first use from the process's one
/// shared `SdkConfig` (or given ready-made, as tests do). A step function
/// that never calls a service never builds its client, and — since the
/// construction is only reachable through first use — the optimizer leaves
/// that client's setup code (config, endpoint rules, plugins) out of the
/// binary.
#[derive(Clone)]
pub struct LazyClient<C> {
    cell: OnceLock<C>,
    config: Option<Arc<SdkConfig>>,
}

/// How a service client is made from the shared config.
pub trait FromSdkConfig {
    fn from_sdk_config(config: &SdkConfig) -> Self;
}

macro_rules! from_sdk_config {
    ($($krate:ident),*) => {$(
        impl FromSdkConfig for $krate::Client {
            fn from_sdk_config(config: &SdkConfig) -> Self {
                $krate::Client::new(config)
            }
        }
    )*};
}
from_sdk_config!(
    aws_sdk_ec2,
    aws_sdk_autoscaling,
    aws_sdk_ses,
    aws_sdk_scheduler,
    aws_sdk_sfn
);

impl<C> LazyClient<C> {
    /// Built on first use from `config`.
    pub fn lazy(config: Arc<SdkConfig>) -> Self {
        Self {
            cell: OnceLock::new(),
            config: Some(config),
        }
    }

    /// Already built.
    pub fn ready(client: C) -> Self {
        Self {
            cell: OnceLock::from(client),
            config: None,
        }
    }
}

impl<C: FromSdkConfig> std::ops::Deref for LazyClient<C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.cell.get_or_init(|| match &self.config {
            Some(config) => C::from_sdk_config(config),
            // `ready` fills the cell, `lazy` sets the config: one of them holds.
            None => C::from_sdk_config(&SdkConfig::builder().build()),
        })
    }
}

impl<C> std::fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.cell.get().is_some())
            .finish()
    }
}
