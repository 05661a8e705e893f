//! What a group launches from (a launch template, a mixed instances policy or
//! a launch configuration): read from StartInstanceRefresh's
//! `DesiredConfiguration.*` form keys and from the emulator's group, written
//! as DescribeAutoScalingGroups / DescribeInstanceRefreshes elements, and sent
//! to the emulator.

use super::super::xml::{leaf, XmlWriter};
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides,
    LaunchTemplateSpecification, MixedInstancesPolicy,
};
use std::collections::HashMap;
use std::io;

#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    Template(LaunchTemplateSpecification),
    Mixed(MixedInstancesPolicy),
    Configuration(String),
}

impl Setting {
    /// The group's own setting, as the emulator describes it.
    pub fn of_group(g: &AutoScalingGroup) -> Option<Self> {
        if let Some(m) = g.mixed_instances_policy() {
            return Some(Self::Mixed(m.clone()));
        }
        if let Some(lt) = g.launch_template() {
            return Some(Self::Template(lt.clone()));
        }
        g.launch_configuration_name()
            .map(|n| Self::Configuration(n.to_string()))
    }

    /// The launch template specification the setting launches from by
    /// default (a mixed policy's own); none for a launch configuration.
    pub fn template(&self) -> Option<&LaunchTemplateSpecification> {
        match self {
            Self::Template(s) => Some(s),
            Self::Mixed(m) => m
                .launch_template()
                .and_then(|l| l.launch_template_specification()),
            Self::Configuration(_) => None,
        }
    }

    /// Whether AWS can roll back to this setting: only to a numbered launch
    /// template version (absent = `$Default`, the API's default).
    pub fn is_reversible(&self) -> bool {
        self.template()
            .is_some_and(|s| !matches!(s.version().unwrap_or("$Default"), "$Default" | "$Latest"))
    }

    /// The setting as DescribeAutoScalingGroups writes it.
    pub fn write(&self, w: &mut XmlWriter) -> io::Result<()> {
        match self {
            Self::Template(s) => write_spec(w, "LaunchTemplate", s),
            Self::Mixed(m) => write_mixed(w, m),
            Self::Configuration(n) => leaf(w, "LaunchConfigurationName", n),
        }
    }
}

/// The desired configuration of a StartInstanceRefresh request: `Ok(None)`
/// without one; `Err` (a ValidationError message) with both kinds, which the
/// API forbids ("you must specify either a `LaunchTemplate` or a
/// `MixedInstancesPolicy`").
pub fn desired(form: &HashMap<String, String>) -> Result<Option<Setting>, String> {
    let lt = spec_at(form, "DesiredConfiguration.LaunchTemplate");
    let mixed = mixed_at(form, "DesiredConfiguration.MixedInstancesPolicy");
    match (lt, mixed) {
        (Some(_), Some(_)) => Err(
            "Sandbox: a desired configuration specifies either a LaunchTemplate or a \
             MixedInstancesPolicy, not both."
                .into(),
        ),
        (Some(s), None) => Ok(Some(Setting::Template(s))),
        (None, Some(m)) => Ok(Some(Setting::Mixed(m))),
        (None, None) => Ok(None),
    }
}

fn get<'a>(form: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    form.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// A `LaunchTemplateSpecification` under `prefix` (by id or name), the
/// version as given (none: `$Default`, as AWS reads it).
fn spec_at(form: &HashMap<String, String>, prefix: &str) -> Option<LaunchTemplateSpecification> {
    let id = get(form, &format!("{prefix}.LaunchTemplateId"));
    let name = get(form, &format!("{prefix}.LaunchTemplateName"));
    if id.is_none() && name.is_none() {
        return None;
    }
    Some(
        LaunchTemplateSpecification::builder()
            .set_launch_template_id(id.map(str::to_string))
            .set_launch_template_name(name.map(str::to_string))
            .version(get(form, &format!("{prefix}.Version")).unwrap_or("$Default"))
            .build(),
    )
}

/// A `MixedInstancesPolicy` under `prefix`, exactly as sent: what is left out
/// stays out (the group then has the API's defaults).
fn mixed_at(form: &HashMap<String, String>, prefix: &str) -> Option<MixedInstancesPolicy> {
    if !form.keys().any(|k| k.starts_with(&format!("{prefix}."))) {
        return None;
    }
    let base = format!("{prefix}.LaunchTemplate");
    let mut overrides: Vec<usize> = form
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{base}.Overrides.member.")))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect();
    overrides.sort_unstable();
    overrides.dedup();
    let mut lt = LaunchTemplate::builder().set_launch_template_specification(spec_at(
        form,
        &format!("{base}.LaunchTemplateSpecification"),
    ));
    for n in overrides {
        let p = format!("{base}.Overrides.member.{n}");
        lt = lt.overrides(
            LaunchTemplateOverrides::builder()
                .set_instance_type(get(form, &format!("{p}.InstanceType")).map(str::to_string))
                .set_weighted_capacity(
                    get(form, &format!("{p}.WeightedCapacity")).map(str::to_string),
                )
                .set_launch_template_specification(spec_at(
                    form,
                    &format!("{p}.LaunchTemplateSpecification"),
                ))
                .build(),
        );
    }
    let d = format!("{prefix}.InstancesDistribution");
    let text = |f: &str| get(form, &format!("{d}.{f}")).map(str::to_string);
    let number = |f: &str| get(form, &format!("{d}.{f}")).and_then(|v| v.parse().ok());
    let distribution = form
        .keys()
        .any(|k| k.starts_with(&format!("{d}.")))
        .then(|| {
            InstancesDistribution::builder()
                .set_on_demand_allocation_strategy(text("OnDemandAllocationStrategy"))
                .set_on_demand_base_capacity(number("OnDemandBaseCapacity"))
                .set_on_demand_percentage_above_base_capacity(number(
                    "OnDemandPercentageAboveBaseCapacity",
                ))
                .set_spot_allocation_strategy(text("SpotAllocationStrategy"))
                .set_spot_instance_pools(number("SpotInstancePools"))
                .set_spot_max_price(text("SpotMaxPrice"))
                .build()
        });
    Some(
        MixedInstancesPolicy::builder()
            .launch_template(lt.build())
            .set_instances_distribution(distribution)
            .build(),
    )
}

/// `<name>` with a specification's id, name and version (those present).
pub fn write_spec(
    w: &mut XmlWriter,
    name: &str,
    s: &LaunchTemplateSpecification,
) -> io::Result<()> {
    w.create_element(name).write_inner_content(|w| {
        if let Some(v) = s.launch_template_id() {
            leaf(w, "LaunchTemplateId", v)?;
        }
        if let Some(v) = s.launch_template_name() {
            leaf(w, "LaunchTemplateName", v)?;
        }
        if let Some(v) = s.version() {
            leaf(w, "Version", v)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// `<MixedInstancesPolicy>` with what the policy holds.
pub fn write_mixed(w: &mut XmlWriter, m: &MixedInstancesPolicy) -> io::Result<()> {
    w.create_element("MixedInstancesPolicy")
        .write_inner_content(|w| {
            if let Some(lt) = m.launch_template() {
                w.create_element("LaunchTemplate")
                    .write_inner_content(|w| {
                        if let Some(s) = lt.launch_template_specification() {
                            write_spec(w, "LaunchTemplateSpecification", s)?;
                        }
                        w.create_element("Overrides").write_inner_content(|w| {
                            for o in lt.overrides() {
                                w.create_element("member").write_inner_content(|w| {
                                    if let Some(t) = o.instance_type() {
                                        leaf(w, "InstanceType", t)?;
                                    }
                                    if let Some(s) = o.launch_template_specification() {
                                        write_spec(w, "LaunchTemplateSpecification", s)?;
                                    }
                                    if let Some(c) = o.weighted_capacity() {
                                        leaf(w, "WeightedCapacity", c)?;
                                    }
                                    Ok(())
                                })?;
                            }
                            Ok(())
                        })?;
                        Ok(())
                    })?;
            }
            if let Some(d) = m.instances_distribution() {
                w.create_element("InstancesDistribution")
                    .write_inner_content(|w| {
                        let mut opt = |n: &str, v: Option<String>| match v {
                            Some(v) => leaf(w, n, &v),
                            None => Ok(()),
                        };
                        opt(
                            "OnDemandAllocationStrategy",
                            d.on_demand_allocation_strategy().map(str::to_string),
                        )?;
                        opt(
                            "OnDemandBaseCapacity",
                            d.on_demand_base_capacity().map(|v| v.to_string()),
                        )?;
                        opt(
                            "OnDemandPercentageAboveBaseCapacity",
                            d.on_demand_percentage_above_base_capacity()
                                .map(|v| v.to_string()),
                        )?;
                        opt(
                            "SpotAllocationStrategy",
                            d.spot_allocation_strategy().map(str::to_string),
                        )?;
                        opt(
                            "SpotInstancePools",
                            d.spot_instance_pools().map(|v| v.to_string()),
                        )?;
                        opt("SpotMaxPrice", d.spot_max_price().map(str::to_string))
                    })?;
            }
            Ok(())
        })?;
    Ok(())
}

/// A specification as the emulator takes it: DescribeAutoScalingGroups names
/// a template by id and name, an update request may name only one.
fn by_one_name(s: &LaunchTemplateSpecification) -> LaunchTemplateSpecification {
    let mut s = s.clone();
    if s.launch_template_id.is_some() {
        s.launch_template_name = None;
    }
    s
}

/// An UpdateAutoScalingGroup request that sets the group to `setting`.
pub fn apply(
    req: aws_sdk_autoscaling::operation::update_auto_scaling_group::builders::UpdateAutoScalingGroupFluentBuilder,
    setting: &Setting,
) -> aws_sdk_autoscaling::operation::update_auto_scaling_group::builders::UpdateAutoScalingGroupFluentBuilder{
    match setting {
        Setting::Template(s) => req.launch_template(by_one_name(s)),
        Setting::Configuration(n) => req.launch_configuration_name(n),
        Setting::Mixed(m) => {
            let mut m = m.clone();
            if let Some(lt) = m.launch_template.as_mut() {
                lt.launch_template_specification =
                    lt.launch_template_specification.as_ref().map(by_one_name);
                for o in lt.overrides.iter_mut().flatten() {
                    o.launch_template_specification =
                        o.launch_template_specification.as_ref().map(by_one_name);
                }
            }
            req.mixed_instances_policy(m)
        }
    }
}
