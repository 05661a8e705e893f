//! The emulated instance refresh on its own: listing, paging and filtering,
//! and the AutoRollback refusals.

use super::*;

#[test]
fn a_refresh_is_listed_in_describe_shape() {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
        .unwrap()
        .to_utc();
    let r = Refresh {
        id: "r-1".into(),
        group: "g".into(),
        status: "Failed".into(),
        reason: Some("it's <bad>".into()),
        percentage: 50,
        to_update: 2,
        start,
        end: Some(start + chrono::Duration::seconds(1)),
        lt_id: "lt-1".into(),
        version: "$Default".into(),
        cancel_requested: false,
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
    }
}

fn refresh(id: String, start: chrono::DateTime<chrono::Utc>) -> Refresh {
    Refresh {
        id,
        group: "g".into(),
        status: "Successful".into(),
        reason: None,
        percentage: 100,
        to_update: 0,
        start,
        end: None,
        lt_id: "lt-1".into(),
        version: "$Default".into(),
        cancel_requested: false,
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
