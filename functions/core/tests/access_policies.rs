//! The callers' IAM policies of `infra/access/` (viewer, deployer and
//! administrator, each for one environment or for all), evaluated with an
//! IAM policy engine (iam-rs) the way API Gateway authorizes an AWS_IAM
//! route: `execute-api:Invoke` on
//! `arn:aws:execute-api:<region>:<account>:<api id>/$default/<METHOD>/<path>`.
//! Against every operation of `infra/openapi.yaml` (each mapped to its
//! route with `route_of`), for a sample environment and its neighbours, each
//! role reaches exactly the routes whose `Route::role()` it holds, in its
//! own environment only. The checker is shown to report widened (and
//! narrowed) policies, and README.md shows each policy verbatim.

use autosky_core::api::page::PAGE_ROUTES;
use autosky_core::api::{route_of, Route};
use autosky_core::domain::Role;
use iam_rs::{
    Arn, Decision, IAMPolicy, IAMRequest, PolicyEvaluator, Principal, PrincipalId, Validate,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const REGION: &str = "eu-west-3";
const ACCOUNT: &str = "123456789012";
const API_ID: &str = "a1b2c3d4e5";
const DEPLOYMENT: &str = "01JDEPLOYMENT0000000000000";

/// The sample environment and neighbours that a careless wildcard would
/// reach: ids it is a prefix of, a prefix of it, and an unrelated one.
const ENVS: [&str; 5] = ["prod", "prod-eu", "production", "staging", "pro"];
const ROLES: [Role; 3] = [Role::Viewer, Role::Deployer, Role::Administrator];

/// The HTTP methods the API uses; a path answers the others 405 whatever
/// the policy says.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The execute-api actions besides Invoke: no role needs them.
const OTHER_ACTIONS: [&str; 2] = [
    "execute-api:InvalidateCache",
    "execute-api:ManageConnections",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Which environments a policy is for.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    One(&'a str),
    All,
}

/// `infra/access/<role>.json` (one environment, `ENV_ID`) and
/// `<role>-all.json`, by file name, with the role and whether it is the
/// all-environments form.
fn policy_files() -> BTreeMap<String, (Role, bool, String)> {
    let dir = root().join("infra/access");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let stem = name
            .strip_suffix(".json")
            .unwrap_or_else(|| panic!("infra/access/{name}: only the policies belong here"));
        let (role, all) = match stem.strip_suffix("-all") {
            Some(role) => (role, true),
            None => (stem, false),
        };
        let role = ROLES
            .into_iter()
            .find(|r| r.to_string() == role)
            .unwrap_or_else(|| panic!("infra/access/{name} names no role"));
        files.insert(name, (role, all, std::fs::read_to_string(&path).unwrap()));
    }
    let expected: BTreeSet<String> = ROLES
        .iter()
        .flat_map(|r| [format!("{r}.json"), format!("{r}-all.json")])
        .collect();
    assert_eq!(files.keys().cloned().collect::<BTreeSet<_>>(), expected);
    files
}

/// The policy's JSON with the placeholders filled in (`ENV_ID` with `env`).
fn instantiate(text: &str, env: &str) -> Value {
    let filled = text
        .replace("REGION", REGION)
        .replace("ACCOUNT_ID", ACCOUNT)
        .replace("API_ID", API_ID)
        .replace("ENV_ID", env);
    serde_json::from_str(&filled).unwrap()
}

fn parse(doc: &Value) -> IAMPolicy {
    let policy: IAMPolicy = serde_json::from_value(doc.clone()).unwrap();
    policy
        .validate_result()
        .unwrap_or_else(|e| panic!("invalid policy {doc}: {e}"));
    policy
}

fn route_arn(api_id: &str, method: &str, path: &str) -> String {
    format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/$default/{method}{path}")
}

fn allows(policy: &IAMPolicy, action: &str, arn: &str) -> bool {
    let request = IAMRequest::new(
        Principal::Aws(PrincipalId::String(format!(
            "arn:aws:iam::{ACCOUNT}:user/caller"
        ))),
        action,
        Arn::parse(arn).unwrap(),
    );
    let result = PolicyEvaluator::with_policies(vec![policy.clone()])
        .evaluate(&request)
        .unwrap();
    result.decision == Decision::Allow
}

/// (METHOD, path template) of every operation of the spec.
fn operations() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(root().join("infra/openapi.yaml")).unwrap();
    let spec: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if method != "parameters" {
                out.insert((method.to_uppercase(), path.as_str().unwrap().to_string()));
            }
        }
    }
    assert!(!out.is_empty(), "the spec has no operations");
    out
}

/// The template's path for `env`, every other parameter a deployment id.
fn fill(template: &str, env: &str) -> String {
    let mut path = template.replace("{env}", env);
    while let Some(start) = path.find('{') {
        let end = path[start..].find('}').unwrap() + start;
        path.replace_range(start..=end, DEPLOYMENT);
    }
    path
}

/// The environments to try a template with: every sample, or none to fill.
fn envs_of(template: &str) -> Vec<&'static str> {
    if template.contains("{env}") {
        ENVS.to_vec()
    } else {
        vec![""]
    }
}

/// Whether a policy for `scope` is meant to reach `template` in `env`.
/// `GET /environments` names no environment and, under IAM authorization,
/// lists every environment with its settings: only the all-environments
/// forms grant it, so a caller of one environment learns nothing of the
/// others.
fn in_scope(scope: Scope, template: &str, env: &str) -> bool {
    match scope {
        Scope::All => true,
        Scope::One(own) => template.contains("{env}") && env == own,
    }
}

/// The highest role any route of `method` needs, if the API has one.
fn method_role(method: &str) -> Option<Role> {
    Route::ALL
        .iter()
        .filter(|r| r.method() == method)
        .map(|r| r.role())
        .max()
}

/// Every difference between what `policy` grants and what `role` over
/// `scope` should reach, one line each.
fn discrepancies(policy: &IAMPolicy, role: Role, scope: Scope) -> Vec<String> {
    let mut out = Vec::new();
    let ops = operations();
    for (method, template) in &ops {
        for env in envs_of(template) {
            let path = fill(template, env);
            let route = route_of(method, &path)
                .unwrap_or_else(|| panic!("{method} {template} of the spec has no route"));
            let expected = in_scope(scope, template, env) && route.role() <= role;
            let got = allows(
                policy,
                "execute-api:Invoke",
                &route_arn(API_ID, method, &path),
            );
            if got != expected {
                out.push(format!(
                    "{method} {path} ({route:?}, {}): {}",
                    route.role(),
                    if got {
                        "granted, should not be"
                    } else {
                        "not granted, should be"
                    }
                ));
            }
            for action in OTHER_ACTIONS {
                if allows(policy, action, &route_arn(API_ID, method, &path)) {
                    out.push(format!(
                        "{action} on {method} {path}: granted, should not be"
                    ));
                }
            }
            // Only this stack's API: another API id, same route.
            if allows(
                policy,
                "execute-api:Invoke",
                &route_arn("z9y8x7w6v5", method, &path),
            ) {
                out.push(format!(
                    "{method} {path} of another API: granted, should not be"
                ));
            }
        }
    }
    // A method a path does not declare is answered 405, so granting it
    // reaches nothing; still, no role may hold a method above its own
    // (that is how the policies tell the roles apart), nor outside its
    // environments.
    let templates: BTreeSet<&String> = ops.iter().map(|(_, t)| t).collect();
    for template in templates {
        for method in METHODS {
            if ops.contains(&(method.to_string(), template.clone())) {
                continue;
            }
            for env in envs_of(template) {
                let path = fill(template, env);
                let within = in_scope(scope, template, env)
                    && method_role(method).is_some_and(|needed| needed <= role);
                if !within
                    && allows(
                        policy,
                        "execute-api:Invoke",
                        &route_arn(API_ID, method, &path),
                    )
                {
                    out.push(format!(
                        "{method} {path} (no such route): granted, should not be"
                    ));
                }
            }
        }
    }
    // The page's files are served without an authorizer (they hold no
    // data), so no policy needs them.
    for (method, path, _, _) in PAGE_ROUTES {
        if allows(
            policy,
            "execute-api:Invoke",
            &route_arn(API_ID, method, path),
        ) {
            out.push(format!("{method} {path} (page): granted, should not be"));
        }
    }
    out
}

fn check(policy: &IAMPolicy, role: Role, scope: Scope) {
    let found = discrepancies(policy, role, scope);
    assert!(
        found.is_empty(),
        "{role} over {scope:?}:\n{}",
        found.join("\n")
    );
}

#[test]
fn each_role_reaches_exactly_its_routes_in_its_own_environment() {
    for (name, (role, all, text)) in policy_files() {
        if all {
            check(&parse(&instantiate(&text, "unused")), role, Scope::All);
        } else {
            // Every sample as the policy's own environment: none reaches
            // another, whichever is a prefix of which.
            for own in ENVS {
                let policy = parse(&instantiate(&text, own));
                let found = discrepancies(&policy, role, Scope::One(own));
                assert!(found.is_empty(), "{name} for {own}:\n{}", found.join("\n"));
            }
        }
    }
}

#[test]
fn the_policies_name_only_the_placeholders_and_this_api() {
    for (name, (_, all, text)) in policy_files() {
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["Version"], "2012-10-17", "{name}");
        for statement in doc["Statement"].as_array().unwrap() {
            assert_eq!(statement["Effect"], "Allow", "{name}");
            assert_eq!(statement["Action"], "execute-api:Invoke", "{name}");
            let resources = match &statement["Resource"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().map(|r| r.as_str().unwrap().to_string()).collect(),
                other => panic!("{name}: Resource {other}"),
            };
            for r in resources {
                assert!(
                    r.starts_with("arn:aws:execute-api:REGION:ACCOUNT_ID:API_ID/$default/"),
                    "{name}: {r}"
                );
                assert_eq!(r.contains("ENV_ID"), !all, "{name}: {r}");
            }
        }
    }
}

/// A policy file of infra/access/ for `prod`, changed by `change`.
fn changed(file: &str, change: impl FnOnce(&mut Value)) -> (IAMPolicy, Role) {
    let (role, _, text) = policy_files().remove(file).unwrap();
    let mut doc = instantiate(&text, "prod");
    change(&mut doc);
    (parse(&doc), role)
}

/// Every Resource string of the document, for editing.
fn resources(doc: &mut Value) -> Vec<&mut Value> {
    doc["Statement"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|s| match &mut s["Resource"] {
            Value::Array(a) => a.iter_mut().collect::<Vec<_>>(),
            single => vec![single],
        })
        .collect()
}

fn edit_resources(doc: &mut Value, from: &str, to: &str) {
    for r in resources(doc) {
        *r = json!(r.as_str().unwrap().replace(from, to));
    }
}

fn add_resource(doc: &mut Value, arn: String) {
    doc["Statement"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": arn}));
}

#[test]
fn the_checker_reports_a_widened_or_narrowed_policy() {
    let route = |r: &str| format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/$default/{r}");
    let (put, list) = (route("PUT/environments/prod"), route("GET/environments"));
    type Change = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, &str, Change, &str)> = vec![
        (
            "every execute-api action",
            "viewer.json",
            Box::new(|d| {
                for s in d["Statement"].as_array_mut().unwrap() {
                    s["Action"] = json!("execute-api:*");
                }
            }),
            "execute-api:InvalidateCache on GET /environments/prod: granted",
        ),
        (
            "a wildcard after the environment id",
            "viewer.json",
            Box::new(|d| edit_resources(d, "/environments/prod", "/environments/prod*")),
            "GET /environments/prod-eu (GetEnvironment, viewer): granted",
        ),
        (
            "the same, reaching a longer id",
            "deployer.json",
            Box::new(|d| edit_resources(d, "/environments/prod/", "/environments/prod*/")),
            "POST /environments/production/deployments (StartDeployment, deployer): granted",
        ),
        (
            "any method",
            "viewer.json",
            Box::new(|d| edit_resources(d, "/$default/GET/", "/$default/*/")),
            "POST /environments/prod/deployments (StartDeployment, deployer): granted",
        ),
        (
            "the administrator's PUT",
            "deployer.json",
            Box::new(move |d| add_resource(d, put)),
            "PUT /environments/prod (PutEnvironment, administrator): granted",
        ),
        (
            "the list of every environment",
            "viewer.json",
            Box::new(move |d| add_resource(d, list)),
            "GET /environments (ListEnvironments, viewer): granted",
        ),
        (
            "any API of the account",
            "administrator.json",
            Box::new(|d| edit_resources(d, &format!(":{API_ID}/"), ":*/")),
            "of another API: granted",
        ),
        (
            "a method on a path that does not declare it",
            "deployer.json",
            Box::new(|d| edit_resources(d, "/$default/POST/", "/$default/*/")),
            "PUT /environments/prod/deployments (no such route): granted",
        ),
        (
            "the deployer's DELETE left out",
            "deployer.json",
            Box::new(|d| {
                for s in d["Statement"].as_array_mut().unwrap() {
                    if let Value::Array(a) = &mut s["Resource"] {
                        a.retain(|r| !r.as_str().unwrap().contains("/DELETE/"));
                    }
                }
            }),
            "DELETE /environments/prod/schedules/01JDEPLOYMENT0000000000000 (CancelSchedule, deployer): not granted",
        ),
    ];
    for (what, file, change, expected) in cases {
        let (policy, role) = changed(file, change);
        let found = discrepancies(&policy, role, Scope::One("prod"));
        assert!(
            found.iter().any(|f| f.contains(expected)),
            "{file} with {what}: expected a report containing {expected:?}, got:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn readme_shows_each_policy_verbatim() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut shown = BTreeMap::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- infra/access/")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(
            lines.next(),
            Some("```json"),
            "README: {name} is not followed by a json block"
        );
        let mut block = String::new();
        for l in lines.by_ref().take_while(|l| *l != "```") {
            block.push_str(l);
            block.push('\n');
        }
        assert!(
            shown.insert(name.to_string(), block).is_none(),
            "README shows {name} twice"
        );
    }
    let files: BTreeMap<String, String> = policy_files()
        .into_iter()
        .map(|(name, (_, _, text))| (name, text))
        .collect();
    assert_eq!(
        shown.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "README shows these policies"
    );
    for (name, text) in files {
        assert_eq!(
            shown[&name], text,
            "README's {name} differs from infra/access/{name}"
        );
    }
}
