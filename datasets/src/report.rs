//! Machine-readable reports: every `data check`/`info`/`bench` result is one JSON object with
//! stable keys (documented in docs/data.md) plus a readable table rendering of the same object.

use serde::Serialize;
use serde_json::{Map, Value};

/// A report: `ok` says whether the check passed; `fields` holds the stable keys.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Report {
    pub fn new(ok: bool) -> Report {
        Report { ok, fields: Map::new() }
    }
    /// Build from any serialisable struct (its fields become the report's keys).
    pub fn from_struct<T: Serialize>(ok: bool, v: &T) -> Report {
        let fields = match serde_json::to_value(v) {
            Ok(Value::Object(m)) => m,
            Ok(other) => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
            Err(e) => {
                let mut m = Map::new();
                m.insert("error".into(), Value::String(e.to_string()));
                m
            }
        };
        Report { ok, fields }
    }
    pub fn set(&mut self, key: &str, v: impl Serialize) -> &mut Self {
        self.fields.insert(key.to_string(), serde_json::to_value(v).unwrap_or(Value::Null));
        self
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":{:?}}}", e.to_string()))
    }
    /// Human-readable rendering: one `key  value` line per field, nested objects indented.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self.fields.keys().map(|k| k.len()).max().unwrap_or(0).max(2);
        out.push_str(&format!("{:width$}  {}\n", "ok", self.ok));
        for (k, v) in &self.fields {
            render(&mut out, k, v, 0, width);
        }
        out
    }
}

fn render(out: &mut String, k: &str, v: &Value, indent: usize, width: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push_str(&format!("{pad}{k}\n"));
            let w = m.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k2, v2) in m {
                render(out, k2, v2, indent + 2, w);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) && !a.is_empty() => {
            out.push_str(&format!("{pad}{k}\n"));
            for x in a {
                out.push_str(&format!("{pad}  - {}\n", scalar(x)));
            }
        }
        Value::Array(a) if !a.is_empty() => {
            out.push_str(&format!("{pad}{k}  ({} rows)\n", a.len()));
            for x in a.iter().take(50) {
                out.push_str(&format!("{pad}  - {}\n", x));
            }
        }
        _ => out.push_str(&format!("{pad}{:width$}  {}\n", k, scalar(v), width = width)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.6}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}
