//! The emulated instance refresh on its own: listing, paging and filtering,
//! and the AutoRollback refusals; the runs against the emulator in [`live`].

use super::*;

mod live;

#[test]
fn a_refresh_is_listed_in_describe_shape() {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
        .unwrap()
        .to_utc();
    let r = Refresh {
        status: "Failed".into(),
        reason: Some("it's <bad>".into()),
        percentage: 50,
        to_update: 2,
        start,
        end: Some(start + chrono::Duration::seconds(1)),
        desired: Some(Setting::Template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id("lt-1")
                .version("$Default")
                .build(),
        )),
        ..Refresh::new("r-1".into(), "g".into())
    };
    let mut w = quick_xml::Writer::new(Vec::new());
    write_refresh(&mut w, &r).unwrap();
    assert_eq!(
            String::from_utf8(w.into_inner()).unwrap(),
            "<InstanceRefreshId>r-1</InstanceRefreshId><AutoScalingGroupName>g</AutoScalingGroupName>\
             <Status>Failed</Status><StatusReason>it&apos;s &lt;bad&gt;</StatusReason>\
             <StartTime>2026-01-02T03:04:05.678Z</StartTime><EndTime>2026-01-02T03:04:06.678Z</EndTime>\
             <PercentageComplete>50</PercentageComplete><InstancesToUpdate>2</InstancesToUpdate>\
             <DesiredConfiguration><LaunchTemplate><LaunchTemplateId>lt-1</LaunchTemplateId><Version>$Default</Version></LaunchTemplate></DesiredConfiguration>"
        );
}

fn bridge() -> Bridge {
    use aws_sdk_autoscaling::config::{BehaviorVersion, Region};
    let conf = aws_sdk_autoscaling::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .build();
    Bridge {
        emulator: String::new(),
        state: Default::default(),
        asg: aws_sdk_autoscaling::Client::from_conf(conf),
        phase: std::time::Duration::from_millis(1),
        iam: Default::default(),
        events: crate::aws_events::EventBus::resume("us-east-1").unwrap(),
        tokens: Default::default(),
        sfn: aws_sdk_sfn::Client::from_conf(
            aws_sdk_sfn::config::Builder::new()
                .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
                .region(aws_sdk_sfn::config::Region::new("us-east-1"))
                .build(),
        ),
    }
}

fn refresh(id: String, start: chrono::DateTime<chrono::Utc>) -> Refresh {
    Refresh {
        status: "Successful".into(),
        percentage: 100,
        start,
        ..Refresh::new(id, "g".into())
    }
}

fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Status, refresh ids in order, NextToken, error code.
async fn describe(
    b: &Bridge,
    pairs: &[(&str, &str)],
) -> (u16, Vec<String>, Option<String>, Option<String>) {
    use http_body_util::BodyExt;
    let mut f = form(pairs);
    f.insert("AutoScalingGroupName".into(), "g".into());
    let res = b.describe_refreshes(&f);
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let between = |open: &str, close: &str| -> Vec<String> {
        text.split(open)
            .skip(1)
            .filter_map(|t| t.split(close).next().map(str::to_string))
            .collect()
    };
    let ids = between("<InstanceRefreshId>", "</InstanceRefreshId>");
    let next = between("<NextToken>", "</NextToken>").pop();
    let code = between("<Code>", "</Code>").pop();
    (status, ids, next, code)
}

#[tokio::test]
async fn bridge_describe_refreshes_pages_and_filters() {
    let b = bridge();
    let t0 = chrono::Utc::now();
    {
        let mut st = b.lock();
        let list = st.refreshes.by_group.entry("g".into()).or_default();
        // Started one after the other; each new one goes in front.
        for i in 0..60 {
            list.insert(
                0,
                refresh(format!("r-{i:02}"), t0 + chrono::Duration::seconds(i)),
            );
        }
    }
    let newest_first: Vec<String> = (0..60).rev().map(|i| format!("r-{i:02}")).collect();

    // Default page: 50, newest first, then a token for the other 10.
    let (status, ids, next, _) = describe(&b, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(ids, newest_first[..50]);
    let next = next.expect("a NextToken while more remain");
    let (_, ids, last, _) = describe(&b, &[("NextToken", &next)]).await;
    assert_eq!(ids, newest_first[50..]);
    assert_eq!(last, None);

    // MaxRecords up to 100; above is a ValidationError.
    let (_, ids, next, _) = describe(&b, &[("MaxRecords", "100")]).await;
    assert_eq!((ids.len(), next), (60, None));
    let (_, ids, next, _) = describe(&b, &[("MaxRecords", "7")]).await;
    assert_eq!((ids, next.is_some()), (newest_first[..7].to_vec(), true));
    for bad in ["101", "0", "x"] {
        let (status, _, _, code) = describe(&b, &[("MaxRecords", bad)]).await;
        assert_eq!(
            (status, code.as_deref()),
            (400, Some("ValidationError")),
            "{bad}"
        );
    }
    let (status, _, _, code) = describe(&b, &[("NextToken", "bogus")]).await;
    assert_eq!((status, code.as_deref()), (400, Some("InvalidNextToken")));

    // InstanceRefreshIds: only those, still newest first.
    let (_, ids, next, _) = describe(
        &b,
        &[
            ("InstanceRefreshIds.member.1", "r-03"),
            ("InstanceRefreshIds.member.2", "r-41"),
        ],
    )
    .await;
    assert_eq!(
        (ids, next),
        (vec!["r-41".to_string(), "r-03".to_string()], None)
    );
}

#[test]
fn bridge_refuses_auto_rollback_on_default_or_latest_group() {
    let with = |rollback: &str| {
        form(&[
            ("Preferences.AutoRollback", rollback),
            (
                "DesiredConfiguration.LaunchTemplate.LaunchTemplateId",
                "lt-1",
            ),
            ("DesiredConfiguration.LaunchTemplate.Version", "$Default"),
        ])
    };
    for current in [Some("$Default"), Some("$Latest"), None] {
        let m = auto_rollback_refusal(&with("true"), current).expect("refused");
        assert!(m.contains("$Latest or $Default"), "{m}");
    }
    // A numbered group may be refreshed to "$Default" with AutoRollback.
    assert_eq!(auto_rollback_refusal(&with("true"), Some("3")), None);
    // Without AutoRollback a $Default group is fine.
    assert_eq!(
        auto_rollback_refusal(&with("false"), Some("$Default")),
        None
    );
    assert_eq!(auto_rollback_refusal(&form(&[]), Some("$Default")), None);
}

#[test]
fn bridge_refuses_auto_rollback_without_desired_configuration() {
    let f = form(&[("Preferences.AutoRollback", "true")]);
    let m = auto_rollback_refusal(&f, Some("3")).expect("refused");
    assert!(
            m.starts_with("The request isn't valid. The AutoRollback parameter cannot be set to true when the DesiredConfiguration parameter is empty."),
            "{m}"
        );
}

#[test]
fn batches_follow_min_healthy_and_are_at_least_two() {
    // (group, to replace, MinHealthyPercentage) → batch size
    for (g, n, mh, want) in [
        (4, 4, 90, 1),
        (4, 4, 50, 2),
        (4, 4, 0, 2),
        (2, 2, 0, 1),
        (3, 3, 0, 2),
        (1, 1, 90, 1),
        (10, 10, 90, 1),
        (10, 10, 70, 3),
        (4, 1, 0, 1),
    ] {
        assert_eq!(run::batch_size(g, n, mh), want, "{g} {n} {mh}");
    }
}

#[test]
fn desired_mixed_policy_is_read_whole_from_the_form() {
    let p = "DesiredConfiguration.MixedInstancesPolicy";
    let f = form(&[
        (
            &format!("{p}.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId"),
            "lt-1",
        ),
        (
            &format!("{p}.LaunchTemplate.LaunchTemplateSpecification.Version"),
            "7",
        ),
        (
            &format!("{p}.LaunchTemplate.Overrides.member.2.InstanceType"),
            "m5.large",
        ),
        (
            &format!("{p}.LaunchTemplate.Overrides.member.1.InstanceType"),
            "c5.large",
        ),
        (
            &format!("{p}.LaunchTemplate.Overrides.member.1.WeightedCapacity"),
            "2",
        ),
        (
            &format!("{p}.InstancesDistribution.OnDemandPercentageAboveBaseCapacity"),
            "50",
        ),
    ]);
    let Ok(Some(Setting::Mixed(m))) = setting::desired(&f) else {
        panic!("a mixed policy");
    };
    let lt = m.launch_template().unwrap();
    let s = lt.launch_template_specification().unwrap();
    assert_eq!(
        (s.launch_template_id(), s.version()),
        (Some("lt-1"), Some("7"))
    );
    let overrides: Vec<_> = lt
        .overrides()
        .iter()
        .map(|o| (o.instance_type(), o.weighted_capacity()))
        .collect();
    assert_eq!(
        overrides,
        [(Some("c5.large"), Some("2")), (Some("m5.large"), None)]
    );
    let d = m.instances_distribution().unwrap();
    assert_eq!(
        (
            d.on_demand_percentage_above_base_capacity(),
            d.on_demand_base_capacity()
        ),
        (Some(50), None),
        "what is left out stays out"
    );
    // Both kinds at once are refused; neither is no desired configuration.
    let mut both = f.clone();
    both.insert(
        "DesiredConfiguration.LaunchTemplate.LaunchTemplateId".into(),
        "lt-1".into(),
    );
    assert!(setting::desired(&both).is_err());
    assert_eq!(setting::desired(&form(&[])), Ok(None));
}

#[test]
fn checkpoints_delays_and_alarms_are_read_and_refused_as_aws_does() {
    let p = prefs(&form(&[
        ("Preferences.CheckpointPercentages.member.1", "10"),
        ("Preferences.CheckpointPercentages.member.2", "50"),
        ("Preferences.CheckpointPercentages.member.3", "100"),
        ("Preferences.CheckpointDelay", "900"),
        ("Preferences.AlarmSpecification.Alarms.member.1", "web-5xx"),
    ]))
    .unwrap();
    assert_eq!(p.checkpoints, vec![10, 50, 100]);
    assert_eq!(p.checkpoint_delay, 900);
    assert_eq!(p.alarms, vec!["web-5xx".to_string()]);
    // "If you specify a value for CheckpointPercentages and not for
    // CheckpointDelay, the CheckpointDelay defaults to 3600 (1 hour)."
    let p = prefs(&form(&[(
        "Preferences.CheckpointPercentages.member.1",
        "20",
    )]))
    .unwrap();
    assert_eq!(p.checkpoint_delay, 3600);
    // A partial refresh (last below 100) is accepted.
    assert_eq!(p.checkpoints, vec![20]);

    let refused = |pairs: &[(&str, &str)]| prefs(&form(pairs)).expect_err("refused");
    let cp = |i: usize, v: &'static str| {
        (
            [
                "Preferences.CheckpointPercentages.member.1",
                "Preferences.CheckpointPercentages.member.2",
            ][i],
            v,
        )
    };
    assert!(refused(&[cp(0, "50"), cp(1, "10")]).contains("ascending"));
    assert!(refused(&[cp(0, "50"), cp(1, "50")]).contains("unique"));
    for bad in ["0", "101", "x"] {
        let m = refused(&[cp(0, bad)]);
        assert!(m.starts_with("1 validation error detected"), "{m}");
    }
    let m = refused(&[("Preferences.CheckpointDelay", "60")]);
    assert!(m.contains("without CheckpointPercentages"), "{m}");
    let m = refused(&[cp(0, "50"), ("Preferences.CheckpointDelay", "172801")]);
    assert!(m.contains("between 0 and 172800"), "{m}");
    let eleven: Vec<(String, String)> = (1..=11)
        .map(|i| {
            (
                format!("Preferences.AlarmSpecification.Alarms.member.{i}"),
                format!("a{i}"),
            )
        })
        .collect();
    let eleven: HashMap<String, String> = eleven.into_iter().collect();
    assert!(prefs(&eleven)
        .unwrap_err()
        .contains("less than or equal to 10"));
    let long = "x".repeat(256);
    let m = refused(&[("Preferences.AlarmSpecification.Alarms.member.1", &long)]);
    assert!(m.contains("between 1 and 255"), "{m}");
}

#[test]
fn pauses_are_scaled_and_batches_stop_at_checkpoints() {
    let phase = std::time::Duration::from_millis(300);
    // One phase per 5 minutes, at least one, at most what fits in 120 s.
    assert_eq!(run::pause_phases(0, phase), 1);
    assert_eq!(run::pause_phases(3600, phase), 12);
    assert_eq!(run::pause_phases(172_800, phase), 400);
    assert_eq!(
        run::pause_phases(172_800, std::time::Duration::from_secs(1)),
        120
    );
    // (batch, done, total, next checkpoint) → next batch
    for (batch, done, total, c, want) in [
        (3, 0, 10, Some(20), 2),
        (3, 2, 10, Some(50), 3),
        (3, 5, 10, Some(50), 1),
        (1, 0, 2, Some(50), 1),
        (4, 0, 4, None, 4),
        (4, 0, 4, Some(100), 4),
    ] {
        assert_eq!(
            run::next_batch(batch, done, total, c),
            want,
            "{batch} {done} {total} {c:?}"
        );
    }
}

#[tokio::test]
async fn alarm_states_are_set_and_read_through_the_control_route() {
    use http_body_util::BodyExt;
    let b = bridge();
    let body = |r: Response<Full<Bytes>>| async move {
        let status = r.status().as_u16();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(b.to_vec()).unwrap())
    };
    assert_eq!(
        body(b.alarm_control("web 5xx", &Bytes::new())).await,
        (200, r#"{"state":"OK"}"#.into())
    );
    let set = Bytes::from_static(br#"{"state":"ALARM"}"#);
    assert_eq!(body(b.alarm_control("web 5xx", &set)).await.0, 200);
    assert_eq!(
        body(b.alarm_control("web 5xx", &Bytes::new())).await.1,
        r#"{"state":"ALARM"}"#
    );
    let bad = Bytes::from_static(br#"{"state":"RED"}"#);
    assert_eq!(body(b.alarm_control("web 5xx", &bad)).await.0, 400);
    // A refresh watching it sees it; one watching others does not.
    let mut r = Refresh::new("r-1".into(), "g".into());
    r.prefs.alarms = vec!["other".into(), "web 5xx".into()];
    assert_eq!(b.alarm_firing(&r).as_deref(), Some("web 5xx"));
    r.prefs.alarms = vec!["other".into()];
    assert_eq!(b.alarm_firing(&r), None);
}

/// The alarm name in `/_sandbox/alarms/{name}` is a path segment: `%XX`
/// escapes are decoded, a `+` is itself.
#[test]
fn alarm_names_in_the_control_path_are_decoded() {
    use crate::bridge::percent_decode;
    assert_eq!(percent_decode("web%205xx"), "web 5xx");
    assert_eq!(percent_decode("a%2Fb"), "a/b");
    assert_eq!(percent_decode("a+b"), "a+b");
    assert_eq!(percent_decode("caf%C3%A9"), "café");
}
