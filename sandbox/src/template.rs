//! CloudFormation intrinsic functions in template.yaml, resolved the way
//! CloudFormation resolves them at deploy time, with the sandbox's values
//! for parameters, pseudo parameters and resources. serde_yaml hands the
//! short forms (`!Ref X`) over as tagged values; the long forms
//! (`{"Fn::Sub": …}`) are one-key mappings. Only the functions the parts of
//! the template the sandbox reads use are known; any other is an error that
//! names it, never a silently wrong value.

use serde_json::{Map, Value};
use serde_yaml::Value as Y;
use std::collections::BTreeMap;

/// The values `!Ref` and `!GetAtt` resolve to.
#[derive(Debug, Clone, Default)]
pub struct Intrinsics {
    /// `!Ref Name`: parameters (a CommaDelimitedList is a list), pseudo
    /// parameters (`AWS::Region`) and resources.
    refs: BTreeMap<String, Value>,
    /// `!GetAtt Resource.Attribute`, by `Resource.Attribute`.
    attrs: BTreeMap<String, String>,
}

impl Intrinsics {
    pub fn new() -> Self {
        Self::default()
    }

    /// `!Ref name` resolves to `value` (a string, or a list of strings).
    pub fn with_ref(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set_ref(name, value);
        self
    }

    pub fn set_ref(&mut self, name: &str, value: impl Into<Value>) {
        self.refs.insert(name.to_string(), value.into());
    }

    /// `!GetAtt resource.attribute` resolves to `value`.
    pub fn with_attr(mut self, resource: &str, attribute: &str, value: &str) -> Self {
        self.set_attr(resource, attribute, value);
        self
    }

    pub fn set_attr(&mut self, resource: &str, attribute: &str, value: &str) {
        self.attrs
            .insert(format!("{resource}.{attribute}"), value.to_string());
    }

    /// The value `!GetAtt resource.attribute` resolves to.
    pub fn attr(&self, resource: &str, attribute: &str) -> Option<&str> {
        self.attrs
            .get(&format!("{resource}.{attribute}"))
            .map(String::as_str)
    }

    /// YAML to JSON with every intrinsic function replaced by its value.
    pub fn resolve(&self, v: &Y) -> Result<Value, String> {
        Ok(match v {
            Y::Null => Value::Null,
            Y::Bool(b) => Value::Bool(*b),
            Y::Number(n) => serde_json::to_value(n).map_err(|e| e.to_string())?,
            Y::String(s) => Value::String(s.clone()),
            Y::Sequence(s) => Value::Array(
                s.iter()
                    .map(|v| self.resolve(v))
                    .collect::<Result<_, _>>()?,
            ),
            Y::Mapping(m) => {
                if m.len() == 1 {
                    if let Some((Y::String(k), arg)) = m.iter().next() {
                        if k == "Ref" {
                            return self.function("Ref", arg);
                        }
                        if let Some(name) = k.strip_prefix("Fn::") {
                            return self.function(name, arg);
                        }
                    }
                }
                let mut o = Map::new();
                for (k, v) in m {
                    let k = k.as_str().ok_or("a mapping key that is not a string")?;
                    o.insert(k.to_string(), self.resolve(v)?);
                }
                Value::Object(o)
            }
            Y::Tagged(t) => {
                let name = t.tag.to_string();
                self.function(name.trim_start_matches('!'), &t.value)?
            }
        })
    }

    fn function(&self, name: &str, arg: &Y) -> Result<Value, String> {
        match name {
            "Ref" => {
                let target = arg.as_str().ok_or("!Ref of a non-string")?;
                self.refs
                    .get(target)
                    .cloned()
                    .ok_or_else(|| format!("no value for !Ref {target}"))
            }
            "GetAtt" => {
                let path = match self.resolve(arg)? {
                    Value::String(s) => s,
                    Value::Array(parts) => parts
                        .iter()
                        .map(|p| p.as_str().ok_or("!GetAtt of a non-string"))
                        .collect::<Result<Vec<_>, _>>()?
                        .join("."),
                    other => return Err(format!("!GetAtt of {other}")),
                };
                self.attrs
                    .get(&path)
                    .map(|v| Value::String(v.clone()))
                    .ok_or_else(|| format!("no value for !GetAtt {path}"))
            }
            "Sub" => {
                let (text, vars) = match arg {
                    Y::Sequence(s) if s.len() == 2 => {
                        let Value::Object(vars) = self.resolve(&s[1])? else {
                            return Err("!Sub's second element must be a mapping".into());
                        };
                        (s[0].as_str().ok_or("!Sub of a non-string")?, vars)
                    }
                    Y::String(s) => (s.as_str(), Map::new()),
                    _ => return Err("!Sub takes a string or [string, {variables}]".into()),
                };
                self.sub(text, &vars).map(Value::String)
            }
            "Select" => {
                let Value::Array(a) = self.resolve(arg)? else {
                    return Err("!Select takes [index, list]".into());
                };
                let [index, list] = a.as_slice() else {
                    return Err("!Select takes [index, list]".into());
                };
                let i = match index {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| format!("!Select index {index} is not a number"))?;
                let Value::Array(list) = list else {
                    return Err(format!("!Select from {list}, not a list"));
                };
                list.get(i as usize)
                    .cloned()
                    .ok_or_else(|| format!("!Select index {i} out of a list of {}", list.len()))
            }
            "Split" => {
                let Value::Array(a) = self.resolve(arg)? else {
                    return Err("!Split takes [delimiter, string]".into());
                };
                let [Value::String(delimiter), Value::String(s)] = a.as_slice() else {
                    return Err("!Split takes [delimiter, string]".into());
                };
                Ok(Value::Array(
                    s.split(delimiter.as_str())
                        .map(|p| Value::String(p.to_string()))
                        .collect(),
                ))
            }
            other => Err(format!("unsupported intrinsic function {other}")),
        }
    }

    /// `${Name}` from `vars`, else a parameter/resource/pseudo parameter;
    /// `${Resource.Attribute}` a `!GetAtt`; `${!Literal}` is `${Literal}`.
    fn sub(&self, text: &str, vars: &Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in !Sub {text:?}"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                let value = match vars.get(name) {
                    Some(v) => v.clone(),
                    None if self.refs.contains_key(name) => self.refs[name].clone(),
                    None if name.contains('.') => self
                        .attrs
                        .get(name)
                        .map(|v| Value::String(v.clone()))
                        .ok_or_else(|| format!("no value for ${{{name}}} in !Sub"))?,
                    None => return Err(format!("no value for ${{{name}}} in !Sub")),
                };
                match value {
                    Value::String(s) => out.push_str(&s),
                    Value::Number(n) => out.push_str(&n.to_string()),
                    other => return Err(format!("${{{name}}} in !Sub is {other}, not a string")),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(s: &str) -> Y {
        serde_yaml::from_str(s).unwrap()
    }

    fn values() -> Intrinsics {
        Intrinsics::new()
            .with_ref("AWS::Region", "us-east-1")
            .with_ref("Sender", "ops@example.com")
            .with_ref("Roles", json!(["arn:a", "arn:b"]))
            .with_attr("Table", "Arn", "arn:aws:dynamodb:us-east-1:1:table/t")
    }

    #[test]
    fn ref_gives_parameters_lists_and_pseudo_parameters() {
        let v = values();
        assert_eq!(
            v.resolve(&yaml("!Ref Sender")).unwrap(),
            json!("ops@example.com")
        );
        assert_eq!(
            v.resolve(&yaml("!Ref Roles")).unwrap(),
            json!(["arn:a", "arn:b"])
        );
        assert_eq!(
            v.resolve(&yaml("{Ref: AWS::Region}")).unwrap(),
            json!("us-east-1")
        );
        assert!(v
            .resolve(&yaml("!Ref Missing"))
            .unwrap_err()
            .contains("!Ref Missing"));
    }

    #[test]
    fn get_att_takes_the_dotted_and_the_list_form() {
        let v = values();
        let arn = json!("arn:aws:dynamodb:us-east-1:1:table/t");
        assert_eq!(v.resolve(&yaml("!GetAtt Table.Arn")).unwrap(), arn);
        assert_eq!(
            v.resolve(&yaml("{'Fn::GetAtt': [Table, Arn]}")).unwrap(),
            arn
        );
        assert!(v
            .resolve(&yaml("!GetAtt Table.StreamArn"))
            .unwrap_err()
            .contains("Table.StreamArn"));
    }

    #[test]
    fn sub_replaces_refs_attributes_variables_and_keeps_literals() {
        let v = values();
        assert_eq!(
            v.resolve(&yaml("!Sub 'x:${AWS::Region}:${Table.Arn}:${!Keep}'"))
                .unwrap(),
            json!("x:us-east-1:arn:aws:dynamodb:us-east-1:1:table/t:${Keep}")
        );
        assert_eq!(
            v.resolve(&yaml(
                "!Sub ['id/${D}', {D: !Select [1, !Split ['@', !Ref Sender]]}]"
            ))
            .unwrap(),
            json!("id/example.com")
        );
        assert!(v
            .resolve(&yaml("!Sub 'a/${Nope}'"))
            .unwrap_err()
            .contains("${Nope}"));
        assert!(v.resolve(&yaml("!Sub 'a/${Roles}'")).is_err());
    }

    #[test]
    fn select_checks_its_index() {
        let v = values();
        assert_eq!(
            v.resolve(&yaml("!Select [0, !Ref Roles]")).unwrap(),
            json!("arn:a")
        );
        assert!(v
            .resolve(&yaml("!Select [2, !Ref Roles]"))
            .unwrap_err()
            .contains("out of"));
    }

    #[test]
    fn other_functions_are_refused_by_name() {
        let v = values();
        for (text, name) in [
            ("!If [C, a, b]", "If"),
            ("!Join ['', [a]]", "Join"),
            ("{'Fn::ImportValue': x}", "ImportValue"),
        ] {
            let e = v.resolve(&yaml(text)).unwrap_err();
            assert!(e.contains(name), "{text}: {e}");
        }
    }
}
