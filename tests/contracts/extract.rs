//! Reads the vendor documents in `vendor-apis/` into [`Document`]s: every
//! endpoint, its parameter table, its request and response examples and its
//! response codes. Each document has its own layout; each has its reader here.

use std::collections::BTreeMap;

use dbops::emulator::documented::{Document, Endpoint, Example, Parameter};
use regex::Regex;
use serde_json::{Map, Value, json};

/// The document `name` (its file name) with the text `text`.
pub fn extract(name: &str, text: &str) -> Document {
    let lines: Vec<&str> = text.lines().collect();
    let endpoints = match name {
        "db9.txt" => db9(&lines),
        "capydb.txt" => capydb(&lines),
        "infrai-db.txt" | "infrai-byok.txt" => infrai(&lines),
        "supabase-management.txt" => supabase(&lines),
        other => panic!("no reader for {other}"),
    };
    Document {
        document: name.to_string(),
        endpoints,
    }
}

fn endpoint(line: usize, method: &str, path: &str) -> Endpoint {
    Endpoint::new(line, method, path)
}

/// The JSON value that starts on line `start` (0-based) and may run over
/// several lines.
fn json_from(lines: &[&str], start: usize) -> Option<Value> {
    let mut text = String::new();
    for line in lines.iter().skip(start).take(400) {
        text.push_str(line);
        text.push('\n');
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            return Some(value);
        }
    }
    None
}

/// The body of a `curl ... -d '<json>'` on this line.
fn curl_body(line: &str) -> Option<Value> {
    let start = line.find("-d '")? + 4;
    let end = start + line[start..].find('\'')?;
    serde_json::from_str(&line[start..end]).ok()
}

/// The response codes listed after line `from`, up to the next endpoint.
fn codes_after(lines: &[&str], from: usize, until: usize) -> Vec<u16> {
    let mut codes = vec![];
    let mut listing = false;
    for line in &lines[from..until] {
        if line.trim() == "Response codes" {
            listing = true;
        } else if listing {
            match line.strip_prefix("- ").and_then(|c| c.trim().parse().ok()) {
                Some(code) => codes.push(code),
                None => listing = false,
            }
        }
    }
    codes
}

fn db9(lines: &[&str]) -> Vec<Endpoint> {
    let header =
        Regex::new(r"^(GET|POST|PUT|PATCH|DELETE) (/\S+)$").unwrap_or_else(|e| panic!("{e}"));
    let row = Regex::new(
        r"^([a-z_][a-z0-9_]*?)(string\[\]|string|integer|boolean|number|object|array)(yes|no)",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| header.is_match(lines[i]))
        .collect();
    let mut endpoints = vec![];
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let caps = header
            .captures(lines[start])
            .unwrap_or_else(|| unreachable!());
        let mut e = endpoint(start + 1, &caps[1], &caps[2]);
        e.title = lines
            .get(start + 2)
            .map(|l| l.trim().to_string())
            .unwrap_or_default();
        let mut in_table = false;
        for i in start + 1..end {
            let line = lines[i];
            if line == "FieldTypeRequiredDescription" {
                in_table = true;
                continue;
            }
            if in_table {
                match row.captures(line) {
                    Some(c) => e.parameters.push(Parameter {
                        name: c[1].to_string(),
                        required: &c[3] == "yes",
                    }),
                    None => in_table = false,
                }
            }
            if let Some(body) = curl_body(line) {
                e.requests.push(Example {
                    line: i + 1,
                    body,
                    optional: vec![],
                });
            }
            let example = Example {
                line: i + 2,
                body: Value::Null,
                optional: vec![],
            };
            match line {
                "Request" => {
                    if let Some(body) = json_from(lines, i + 1) {
                        e.requests.push(Example { body, ..example });
                    }
                }
                "Response" => {
                    if let Some(body) = json_from(lines, i + 1) {
                        e.responses.push(Example { body, ..example });
                    }
                }
                _ => {}
            }
        }
        endpoints.push(e);
    }
    endpoints
}

fn capydb(lines: &[&str]) -> Vec<Endpoint> {
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let starts: Vec<usize> = (0..lines.len().saturating_sub(1))
        .filter(|&i| methods.contains(&lines[i].trim()) && lines[i + 1].starts_with('/'))
        .collect();
    let mut endpoints = vec![];
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let mut e = endpoint(start + 1, lines[start].trim(), lines[start + 1].trim());
        for (i, line) in lines.iter().enumerate().take(end).skip(start + 2) {
            if !line.trim_start().starts_with('{') {
                continue;
            }
            let Ok(body) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let example = Example {
                line: i + 1,
                body,
                optional: vec![],
            };
            let is_error = example
                .body
                .as_object()
                .is_some_and(|o| o.len() == 1 && o.contains_key("error"));
            if is_error {
                e.errors.push(example);
            } else {
                e.responses.push(example);
            }
        }
        endpoints.push(e);
    }
    endpoints
}

/// A field of an infrai `Returns` shape: `name`, `name?`, `name[]`, `name: Type[]`.
struct ShapeField {
    name: String,
    optional: bool,
    value: Value,
}

/// The type definitions of an infrai document (`Project { id, name }`): the
/// fields of every definition of each type name, merged.
fn infrai_types(lines: &[&str]) -> BTreeMap<String, Vec<String>> {
    let def = Regex::new(r"([A-Z][A-Za-z]+) \{([^}]*)\}").unwrap_or_else(|e| panic!("{e}"));
    let mut types: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        for c in def.captures_iter(line) {
            let fields = types.entry(c[1].to_string()).or_default();
            for field in c[2].split(',').map(str::trim).filter(|f| !f.is_empty()) {
                if !fields.iter().any(|f| f == field) {
                    fields.push(field.to_string());
                }
            }
        }
    }
    types
}

fn shape_field(text: &str, types: &BTreeMap<String, Vec<String>>) -> ShapeField {
    let (name, ty) = match text.split_once(':') {
        Some((n, t)) => (n.trim(), Some(t.trim())),
        None => (text.trim(), None),
    };
    let optional = name.ends_with('?');
    let name = name.trim_end_matches('?');
    let (name, listed) = match name.strip_suffix("[]") {
        Some(n) => (n, true),
        None => (name, false),
    };
    let value = match ty {
        Some("string") => json!("string"),
        Some("boolean") => json!(true),
        Some("number") => json!(0),
        Some(t) if t.ends_with("[]") => {
            let item = t.trim_end_matches("[]");
            match types.get(item) {
                Some(fields) => json!([object_of(fields, types).0]),
                None => json!([]),
            }
        }
        // A field the document gives no type for: its value is unknown.
        _ if listed => json!([]),
        _ => Value::Null,
    };
    ShapeField {
        name: name.to_string(),
        optional,
        value,
    }
}

/// The skeleton of an object with `fields`, and which of them are optional.
fn object_of(fields: &[String], types: &BTreeMap<String, Vec<String>>) -> (Value, Vec<String>) {
    let mut body = Map::new();
    let mut optional = vec![];
    for field in fields {
        let f = shape_field(field, types);
        if f.optional {
            optional.push(f.name.clone());
        }
        body.insert(f.name, f.value);
    }
    (Value::Object(body), optional)
}

/// An infrai `Returns` line (`Project { ... }`, `Project`, `{ items: Project[] }`).
fn infrai_returns(
    text: &str,
    types: &BTreeMap<String, Vec<String>>,
) -> Option<(Value, Vec<String>)> {
    let text = text.trim();
    let fields: Vec<String> = match (text.find('{'), text.rfind('}')) {
        (Some(a), Some(b)) => text[a + 1..b]
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect(),
        _ => types.get(text)?.clone(),
    };
    Some(object_of(&fields, types))
}

fn infrai(lines: &[&str]) -> Vec<Endpoint> {
    let curl = Regex::new(r"curl -X ([A-Z]+) https://api\.infrai\.cc(/\S+)")
        .unwrap_or_else(|e| panic!("{e}"));
    let row = Regex::new(r"^([a-z_]+) \| [^|]+\| *(Required|Optional|必填|可选) *\|")
        .unwrap_or_else(|e| panic!("{e}"));
    let types = infrai_types(lines);
    let mut endpoints: Vec<Endpoint> = vec![];
    let mut parameters = vec![];
    let mut returns: Option<(usize, String)> = None;
    for (i, line) in lines.iter().enumerate() {
        if let Some(c) = row.captures(line) {
            parameters.push(Parameter {
                name: c[1].to_string(),
                required: matches!(&c[2], "Required" | "必填"),
            });
        }
        if matches!(line.trim(), "Returns" | "返回")
            && let Some(next) = lines.get(i + 1)
        {
            let text = next.trim_end_matches("Example").trim_end_matches("示例");
            returns = Some((i + 2, text.to_string()));
        }
        let Some(c) = curl.captures(line) else {
            continue;
        };
        let path: String = c[2]
            .split('/')
            .map(|s| if s == "ID" { "{id}" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let index = match endpoints
            .iter()
            .position(|e| e.method == c[1] && e.path == path)
        {
            Some(index) => index,
            None => {
                endpoints.push(endpoint(i + 1, &c[1], &path));
                endpoints.len() - 1
            }
        };
        let e = &mut endpoints[index];
        e.parameters.append(&mut parameters);
        if let Some((at, text)) = returns.take()
            && let Some((body, optional)) = infrai_returns(&text, &types)
        {
            e.responses.push(Example {
                line: at,
                body,
                optional,
            });
        }
        // The `-d` body is on this line or one of the next few.
        if let Some((at, body)) =
            (i..lines.len().min(i + 4)).find_map(|j| curl_body(lines[j]).map(|b| (j + 1, b)))
        {
            e.requests.push(Example {
                line: at,
                body,
                optional: vec![],
            });
        }
    }
    endpoints
}

fn supabase(lines: &[&str]) -> Vec<Endpoint> {
    let path =
        Regex::new(r"^(/v1/[A-Za-z0-9_{}/.-]*?)([A-Z\[].*)?$").unwrap_or_else(|e| panic!("{e}"));
    let field =
        Regex::new(r"^- ([a-z_][a-z0-9_]*)(Required|Optional)").unwrap_or_else(|e| panic!("{e}"));
    let starts: Vec<usize> = (1..lines.len())
        .filter(|&i| lines[i].starts_with("/v1/"))
        .collect();
    let mut endpoints = vec![];
    for (n, &start) in starts.iter().enumerate() {
        // The title is the line before the path.
        let end = starts.get(n + 1).map(|s| s - 1).unwrap_or(lines.len());
        let Some(c) = path.captures(lines[start]) else {
            continue;
        };
        let mut e = endpoint(start + 1, "", c[1].trim_end_matches("OAuth scopes"));
        e.title = lines[start - 1].trim().to_string();
        let mut in_body = false;
        for line in &lines[start + 1..end] {
            match line.trim() {
                "Body" => in_body = true,
                "Response codes" | "Path parameters" | "Query parameters" => in_body = false,
                _ => {}
            }
            if in_body && let Some(f) = field.captures(line) {
                e.parameters.push(Parameter {
                    name: f[1].to_string(),
                    required: &f[2] == "Required",
                });
            }
        }
        e.codes = codes_after(lines, start, end);
        endpoints.push(e);
    }
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infrai_shapes_become_skeletons_with_optional_fields() {
        let lines = ["Project { id, name }", "Project { id, connection_uri }"];
        let types = infrai_types(&lines);
        let (body, optional) =
            infrai_returns("{ items: Project[], next_cursor?: string }", &types).unwrap();
        assert_eq!(
            body,
            json!({"items": [{"id": null, "name": null, "connection_uri": null}], "next_cursor": "string"})
        );
        assert_eq!(optional, ["next_cursor"]);
    }
}
