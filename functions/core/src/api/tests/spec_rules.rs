//! The spec's statements about every route and about the rules a schema
//! cannot fully carry, derived from the router and checked against it: each
//! route declares the refusals the router shares (and the router produces
//! each of them for that route), every error is problem+json, and the
//! patterns that stand in for a database (time zones) admit all of it.

use super::*;

/// A path of `route` with a valid environment id and deployment id.
fn path_of(route: Route) -> String {
    route
        .template()
        .replace("{env}", ENV)
        .replace("{id}", "01JABCDEFGHJKMNPQRSTVWXYZ9")
}

/// Every route answers the router's shared refusals, and the spec declares
/// each of them for it: an unknown query parameter (400), no caller (401),
/// a body over the limit (413), a body that is not JSON (415, routes that
/// take one), an environment id out of its pattern (400, routes under one).
#[tokio::test]
async fn every_route_declares_the_refusals_the_router_shares() {
    let w = world().await;
    for route in Route::ALL {
        let (method, path) = (route.method(), path_of(route));
        let what = format!("{method} {}", route.template());
        let mut expected = vec![400, 401, 413];

        let res = call(&w.api, with_query(req(method, &path, ""), &[("x", "1")])).await;
        assert_eq!(res.status, 400, "{what}: unknown query parameter");

        let mut anonymous = req(method, &path, "");
        anonymous.identity = None;
        assert_eq!(call(&w.api, anonymous).await.status, 401, "{what}");

        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_BODY));
        assert_eq!(
            call(&w.api, req(method, &path, &big)).await.status,
            413,
            "{what}"
        );

        if route.takes_body() {
            let mut text = req(method, &path, "{}");
            text.content_type = Some("text/plain".into());
            assert_eq!(call(&w.api, text).await.status, 415, "{what}");
            expected.push(415);
        }
        if route.template().contains("{env}") {
            let bad = path.replacen(ENV, "Not_An_Id", 1);
            assert_eq!(
                call(&w.api, req(method, &bad, "")).await.status,
                400,
                "{what}"
            );
        }
        // Faults any route can meet: an internal one, a throttled table.
        expected.extend([500, 503]);
        let declared = spec::Spec::load().statuses(method, route.template());
        for status in expected {
            assert!(
                declared.contains(&status),
                "{what}: {status} is not declared"
            );
        }
    }
}

/// Each route that reads a registered environment or deployment declares
/// 404, and answers it for an environment nobody registered.
#[tokio::test]
async fn every_route_under_an_environment_declares_404() {
    let w = world().await;
    let spec = spec::Spec::load();
    for route in Route::ALL {
        if !route.template().contains("{env}") || route == Route::PutEnvironment {
            continue;
        }
        let path = path_of(route).replacen(ENV, "nowhere", 1);
        let body = match route {
            Route::CreateSchedule => sched_body("2026-11-28T12:00:00", None),
            Route::MoveSchedule => json!({"at": "2026-11-28T12:00:00"}).to_string(),
            _ => String::new(),
        };
        let res = call(&w.api, req(route.method(), &path, &body)).await;
        assert_eq!(res.status, 404, "{:?}", route);
        assert!(spec
            .statuses(route.method(), route.template())
            .contains(&404));
    }
}

/// Every 4xx and 5xx the spec declares is a problem+json Problem.
#[test]
fn every_error_is_problem_json() {
    let spec = spec::Spec::load();
    let mut errors = 0;
    for route in Route::ALL {
        for status in spec.statuses(route.method(), route.template()) {
            if status >= 400 {
                let schema = spec.response_schema(
                    route.method(),
                    route.template(),
                    status,
                    "application/problem+json",
                );
                assert_eq!(
                    schema,
                    Some(json!({"$ref": "#/components/schemas/Problem"})),
                    "{} {} {status}",
                    route.method(),
                    route.template()
                );
                errors += 1;
            }
        }
    }
    assert!(errors >= 60, "{errors}");
}

/// The `Timezone` pattern admits every zone of the database compiled into
/// the API (what the pattern cannot say is which names exist), and the
/// spec's examples of the rules only code can check pass that code.
#[test]
fn the_time_zone_pattern_admits_every_bundled_zone() {
    let spec = spec::Spec::load();
    let tz = spec.schema("Timezone");
    assert_eq!(tz["pattern"], "^[A-Za-z0-9_+/-]{1,32}$");
    let fits = |name: &str| {
        (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+/-".contains(&b))
    };
    let mut zones = 0;
    for name in jiff::tz::db().available() {
        assert!(fits(name.as_str()), "{name}");
        zones += 1;
    }
    assert!(zones > 300, "{zones}");
    let example = |schema: &str| spec.schema(schema)["example"].as_str().unwrap().to_string();
    let at = example("LocalDateTime");
    assert!(crate::schedule::When::parse(&at, Some(&example("Timezone"))).is_ok());
    assert!(valid_email(&example("Email")));
}

/// The bounds the spec gives are the API's.
#[test]
fn the_spec_bounds_are_the_apis() {
    let spec = spec::Spec::load();
    assert_eq!(
        spec.schema("EmailList")["maxItems"],
        json!(crate::api::input::MAX_EMAILS)
    );
    let groups = &spec.schema("EnvironmentInput")["properties"]["autoScalingGroups"];
    assert_eq!(groups["maxItems"], json!(10));
    assert_eq!(groups["uniqueItems"], json!(true));
}
