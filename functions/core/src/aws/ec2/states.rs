//! EC2 instance and image states as enums, read from the SDK's enums by
//! EC2's names (`stopped`, `shutting-down`, `available`, …), so no step
//! compares state names as strings.

use aws_sdk_ec2::types::InstanceStateName;

/// An instance's state, by EC2's name for it (`stopped`, `shutting-down`, …).
#[derive(Debug, Clone, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
    /// A state this code does not know, under EC2's name (`unknown` if none).
    #[strum(default)]
    Other(String),
}

impl InstanceState {
    /// Running or on its way there.
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }

    /// Terminated or on its way there: the instance can never run again.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::ShuttingDown | Self::Terminated)
    }
}

/// An image's state, by EC2's name for it (`available`, `failed`, …).
#[derive(Debug, Clone, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum ImageState {
    Pending,
    Available,
    Invalid,
    Deregistered,
    Transient,
    Failed,
    Error,
    Disabled,
    /// A state this code does not know, under EC2's name (`unknown` if none).
    #[strum(default)]
    Other(String),
}

impl ImageState {
    /// The image will never become available.
    pub fn is_failed(&self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Invalid | Self::Error | Self::Deregistered | Self::Disabled
        )
    }
}

/// Both state enums are read from the SDK's enum of the same states
/// (`InstanceStateName`, `ImageState`) through EC2's names, and shown by them.
macro_rules! state_by_name {
    ($state:ty, $sdk:ty) => {
        impl $state {
            pub(super) fn of(sdk: Option<&$sdk>) -> Self {
                let name = sdk.map_or("unknown", <$sdk>::as_str);
                name.parse().unwrap_or_else(|_| Self::Other(name.into()))
            }

            /// EC2's name of the state.
            pub fn as_str(&self) -> &str {
                match self {
                    Self::Other(name) => name,
                    known => known.into(),
                }
            }
        }

        impl std::fmt::Display for $state {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
state_by_name!(InstanceState, InstanceStateName);
state_by_name!(ImageState, aws_sdk_ec2::types::ImageState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_read_by_ec2_names_and_keep_unknown_ones() {
        let state = |n: &str| InstanceState::of(Some(&InstanceStateName::from(n)));
        assert_eq!(state("shutting-down"), InstanceState::ShuttingDown);
        assert!(state("shutting-down").is_gone() && state("terminated").is_gone());
        assert!(state("pending").is_up() && !state("stopping").is_up());
        assert_eq!(state("hibernating").as_str(), "hibernating");
        assert_eq!(InstanceState::of(None).to_string(), "unknown");
        let image = |n: &str| ImageState::of(Some(&aws_sdk_ec2::types::ImageState::from(n)));
        assert_eq!(image("available"), ImageState::Available);
        assert!(image("deregistered").is_failed() && !image("pending").is_failed());
        assert_eq!(image("pending").to_string(), "pending");
    }
}
