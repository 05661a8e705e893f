//! The named enums of a deployment: its status, a step's status, and the six
//! steps. Each name is derived once from the enum (strum) and the JSON and
//! DynamoDB forms use that same name, so the console, the API and the record
//! cannot disagree.

use serde::{Deserialize, Serialize};
use strum::{EnumCount, IntoStaticStr, VariantArray};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr, strum::Display,
)]
pub enum DeploymentStatus {
    Scheduled,
    Running,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

impl DeploymentStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Scheduled | Self::Running)
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr)]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    NotApplicable,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The six steps, in order. The name is the state name in the console (and
/// in the ASL); serde reads and writes the same name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    IntoStaticStr,
    strum::EnumString,
    strum::Display,
    VariantArray,
    EnumCount,
)]
#[serde(into = "&'static str", try_from = "String")]
pub enum StepName {
    #[strum(serialize = "Initial validation")]
    InitialValidation,
    #[strum(serialize = "Stop preparation server")]
    StopPreparationServer,
    #[strum(serialize = "Create image")]
    CreateImage,
    #[strum(serialize = "Create models")]
    CreateModels,
    #[strum(serialize = "Replace instances")]
    ReplaceInstances,
    #[strum(serialize = "Finalization")]
    Finalization,
}

impl StepName {
    /// Every step, in the order they run.
    pub const ALL: [StepName; Self::COUNT] = match Self::VARIANTS.first_chunk() {
        Some(all) => *all,
        None => panic!("VARIANTS holds every step"),
    };

    /// The step's position in [`StepName::ALL`] and in a deployment's steps.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The function that runs the step: its crate under `functions/` (also
    /// the sandbox's activity and worker name).
    pub fn function(self) -> &'static str {
        match self {
            Self::InitialValidation => "validate",
            Self::StopPreparationServer => "stop-preparation-server",
            Self::CreateImage => "create-image",
            Self::CreateModels => "create-models",
            Self::ReplaceInstances => "replace-instances",
            Self::Finalization => "finalize",
        }
    }

    /// The ASL's placeholder for the function's ARN (`${<Key>}` in
    /// `DefinitionSubstitutions`): the function's name in PascalCase, then
    /// `FunctionArn`.
    pub fn substitution_key(self) -> String {
        let mut key = String::new();
        for word in self.function().split('-') {
            let mut chars = word.chars();
            key.extend(chars.next().map(|c| c.to_ascii_uppercase()));
            key.push_str(chars.as_str());
        }
        key + "FunctionArn"
    }
}

impl TryFrom<String> for StepName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        name.parse()
            .map_err(|_| format!("unknown step name '{}'", super::truncate(&name, 80)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_the_console_names_on_the_wire() {
        assert_eq!(
            StepName::ALL.map(StepName::as_str),
            [
                "Initial validation",
                "Stop preparation server",
                "Create image",
                "Create models",
                "Replace instances",
                "Finalization"
            ]
        );
        for step in StepName::ALL {
            let json = serde_json::to_value(step).unwrap();
            assert_eq!(json, step.as_str());
            assert_eq!(serde_json::from_value::<StepName>(json).unwrap(), step);
            assert_eq!(StepName::ALL[step.index()], step);
        }
        assert!(serde_json::from_value::<StepName>("Nope".into()).is_err());
        assert_eq!(
            StepName::StopPreparationServer.substitution_key(),
            "StopPreparationServerFunctionArn"
        );
        assert_eq!(
            StepName::InitialValidation.substitution_key(),
            "ValidateFunctionArn"
        );
    }

    #[test]
    fn status_names_are_the_variant_names_on_the_wire() {
        for s in [DeploymentStatus::RolledBack, DeploymentStatus::Scheduled] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(DeploymentStatus::RolledBack.as_str(), "RolledBack");
        assert_eq!(StepStatus::NotApplicable.as_str(), "NotApplicable");
        assert_eq!(
            serde_json::to_value(StepStatus::NotApplicable).unwrap(),
            "NotApplicable"
        );
    }
}
