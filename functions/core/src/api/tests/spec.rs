//! Test support: `infra/openapi.yaml` read as data, and a small JSON Schema
//! check (the subset the spec uses: $ref, type, required, properties,
//! additionalProperties, items, enum, bounds) for responses.

use serde_json::Value;
use std::collections::BTreeSet;

pub struct Spec(Value);

impl Spec {
    pub fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/openapi.yaml");
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        Self(serde_json::to_value(yaml).unwrap())
    }

    /// (METHOD, path template) of every operation.
    pub fn routes(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.0["paths"].as_object().unwrap() {
            for method in item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
            {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    /// (METHOD, path template) of every operation with a `requestBody`.
    pub fn routes_with_body(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.0["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if op.get("requestBody").is_some() {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    /// The statuses the spec declares for an operation.
    pub fn statuses(&self, method: &str, template: &str) -> Vec<u16> {
        self.0["paths"][template][method.to_lowercase()]["responses"]
            .as_object()
            .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// The (unresolved) schema of one response's media type, if declared.
    pub fn response_schema(
        &self,
        method: &str,
        template: &str,
        status: u16,
        media_type: &str,
    ) -> Option<Value> {
        let resp = self.resolve(
            &self.0["paths"][template][method.to_lowercase()]["responses"][status.to_string()],
        );
        resp["content"].get(media_type).map(|m| m["schema"].clone())
    }

    /// A schema of `components.schemas`.
    pub fn schema(&self, name: &str) -> &Value {
        &self.0["components"]["schemas"][name]
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let mut cur = &self.0;
                for part in r.trim_start_matches("#/").split('/') {
                    cur = &cur[part];
                }
                self.resolve(cur)
            }
            None => v,
        }
    }

    /// Checks a response against the spec: the status is declared for the
    /// operation (Problem for undeclared routes), and the body fits its schema.
    pub fn check_response(
        &self,
        method: &str,
        template: Option<&str>,
        status: u16,
        content_type: &str,
        body: &Value,
    ) -> Result<(), String> {
        let schema = match template.and_then(|t| self.0["paths"][t].get(method.to_lowercase())) {
            Some(op) => {
                let resp = op["responses"].get(status.to_string()).ok_or_else(|| {
                    format!("{method} {template:?}: status {status} is not in the spec")
                })?;
                let resp = self.resolve(resp);
                let media = resp["content"].get(content_type).ok_or_else(|| {
                    format!("{method} {template:?} {status}: {content_type} is not in the spec")
                })?;
                media["schema"].clone()
            }
            None => serde_json::json!({"$ref": "#/components/schemas/Problem"}),
        };
        self.check(&schema, body, "$")
    }

    /// The example values of a response (its `examples` map), with the
    /// schema they must fit.
    pub fn examples(&self, method: &str, template: &str, status: u16) -> (Value, Vec<Value>) {
        let resp = self.resolve(
            &self.0["paths"][template][method.to_lowercase()]["responses"][status.to_string()],
        );
        let media = &resp["content"]["application/problem+json"];
        let values = media["examples"]
            .as_object()
            .map(|m| m.values().map(|e| e["value"].clone()).collect())
            .unwrap_or_default();
        (media["schema"].clone(), values)
    }

    pub fn check(&self, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
        let s = self.resolve(schema);
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(x) => vec![x.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let ok = types.iter().any(|t| match *t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                "null" => v.is_null(),
                _ => false,
            });
            if !ok {
                return Err(format!("{at}: {v} is not of type {types:?}"));
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                return Err(format!("{at}: {v} is not one of {e:?}"));
            }
        }
        if let (Some(n), Some(min)) = (v.as_f64(), s.get("minimum").and_then(Value::as_f64)) {
            if n < min {
                return Err(format!("{at}: {n} < {min}"));
            }
        }
        if let (Some(n), Some(max)) = (v.as_f64(), s.get("maximum").and_then(Value::as_f64)) {
            if n > max {
                return Err(format!("{at}: {n} > {max}"));
            }
        }
        if let Some(obj) = v.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap_or_default();
                if !obj.contains_key(r) {
                    return Err(format!("{at}: required property {r} missing"));
                }
            }
            for (k, val) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => self.check(ps, val, &format!("{at}.{k}"))?,
                    None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("{at}: property {k} is not in the schema"))
                    }
                    None => {}
                }
            }
        }
        if let Some(arr) = v.as_array() {
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
                if arr.len() as u64 > max {
                    return Err(format!("{at}: more than {max} items"));
                }
            }
            if let Some(items) = s.get("items") {
                for (i, x) in arr.iter().enumerate() {
                    self.check(items, x, &format!("{at}[{i}]"))?;
                }
            }
        }
        Ok(())
    }
}
