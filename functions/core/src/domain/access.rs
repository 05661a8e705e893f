//! Who may do what on an environment: the three roles, each environment's
//! access map (which groups hold which role) and the role a caller's groups
//! give it. A role includes the ones below it.

use serde::{Deserialize, Serialize};

/// A caller's role on one environment, least first: a deployer may do what a
/// viewer may, an administrator what a deployer may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    /// Reads the environment, its history and its deployments' details.
    Viewer,
    /// Also starts, schedules, moves and cancels deployments.
    Deployer,
    /// Also registers and updates the environment (what it points at, its
    /// settings and this map).
    Administrator,
}

/// An environment's access map: the caller groups (the JWT's groups claim)
/// holding each role. A group in several lists holds the highest role. An
/// environment without one (or with every list empty) is visible to the
/// administrators' groups of the stack only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AccessMap {
    pub viewers: Vec<String>,
    pub deployers: Vec<String>,
    pub administrators: Vec<String>,
}

impl AccessMap {
    /// The highest role any of `groups` holds in this map.
    pub fn role_of(&self, groups: &[String]) -> Option<Role> {
        let holds = |list: &[String]| list.iter().any(|g| groups.contains(g));
        [
            (Role::Administrator, &self.administrators),
            (Role::Deployer, &self.deployers),
            (Role::Viewer, &self.viewers),
        ]
        .into_iter()
        .find(|(_, list)| holds(list))
        .map(|(role, _)| role)
    }
}

/// How a request's caller was authorized before it reached the router.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Caller {
    /// API Gateway authorized the route itself (IAM authorization: the
    /// caller's IAM policy allowed `execute-api:Invoke` on this very route),
    /// so the router adds no check of its own: the caller acts as an
    /// administrator of whatever its policy reaches. Also the sandbox's
    /// caller when a request names none.
    #[default]
    RouteAuthorized,
    /// A caller with these groups (the JWT authorizer's groups claim, or the
    /// sandbox's `X-Sandbox-Groups`): its role on each environment comes from
    /// the environment's access map and the stack's administrators' groups.
    Groups(Vec<String>),
}

impl Caller {
    /// Whether the caller belongs to one of the stack's administrators'
    /// groups (administrator of every environment; may register new ones).
    pub fn is_stack_administrator(&self, admin_groups: &[String]) -> bool {
        match self {
            Caller::RouteAuthorized => true,
            Caller::Groups(groups) => groups.iter().any(|g| admin_groups.contains(g)),
        }
    }

    /// The caller's role on an environment with this access map, if any.
    pub fn role(&self, admin_groups: &[String], access: Option<&AccessMap>) -> Option<Role> {
        if self.is_stack_administrator(admin_groups) {
            return Some(Role::Administrator);
        }
        match self {
            Caller::RouteAuthorized => Some(Role::Administrator),
            Caller::Groups(groups) => access.and_then(|a| a.role_of(groups)),
        }
    }
}

/// The groups of an API Gateway JWT claim. HTTP APIs pass every claim to the
/// function as a string, an array one as its values in brackets separated
/// by spaces (`[admins staging-deployers]`); a claim set by other means may
/// be a comma-separated list. Empty names are dropped.
pub fn groups_of_claim(claim: &str) -> Vec<String> {
    let inner = claim.trim();
    let inner = inner
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(inner);
    inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    fn map() -> AccessMap {
        AccessMap {
            viewers: groups(&["support", "dev"]),
            deployers: groups(&["dev"]),
            administrators: groups(&["platform"]),
        }
    }

    #[test]
    fn roles_are_ordered_and_named_in_lowercase() {
        assert!(Role::Viewer < Role::Deployer && Role::Deployer < Role::Administrator);
        assert_eq!(Role::Deployer.to_string(), "deployer");
        assert_eq!(
            serde_json::to_value(Role::Administrator).unwrap(),
            "administrator"
        );
    }

    #[test]
    fn a_group_in_several_lists_holds_the_highest_role() {
        assert_eq!(map().role_of(&groups(&["dev"])), Some(Role::Deployer));
        assert_eq!(map().role_of(&groups(&["support"])), Some(Role::Viewer));
        assert_eq!(
            map().role_of(&groups(&["support", "platform"])),
            Some(Role::Administrator)
        );
        assert_eq!(map().role_of(&groups(&["sales"])), None);
        assert_eq!(map().role_of(&[]), None);
    }

    #[test]
    fn stack_administrators_administer_every_environment_even_without_a_map() {
        let admins = groups(&["autosky-admins"]);
        let caller = Caller::Groups(groups(&["autosky-admins"]));
        assert_eq!(caller.role(&admins, None), Some(Role::Administrator));
        assert_eq!(
            Caller::Groups(groups(&["dev"])).role(&admins, None),
            None,
            "no map: administrators only"
        );
        assert_eq!(
            Caller::Groups(groups(&["dev"])).role(&admins, Some(&map())),
            Some(Role::Deployer)
        );
        assert_eq!(
            Caller::Groups(vec![]).role(&admins, Some(&map())),
            None,
            "a token without the groups claim holds no role"
        );
        assert_eq!(
            Caller::RouteAuthorized.role(&[], None),
            Some(Role::Administrator)
        );
    }

    #[test]
    fn claims_parse_in_api_gateway_and_list_forms() {
        assert_eq!(
            groups_of_claim("[admins staging-deployers]"),
            groups(&["admins", "staging-deployers"])
        );
        assert_eq!(groups_of_claim("admins"), groups(&["admins"]));
        assert_eq!(groups_of_claim("a, b,c"), groups(&["a", "b", "c"]));
        assert_eq!(groups_of_claim("[]"), Vec::<String>::new());
        assert_eq!(groups_of_claim(""), Vec::<String>::new());
    }
}
