//! The JSON Schema (draft 7) of scenario files, generated from the types that read them.
//!
//! The top level comes from [`ScenarioFile`]'s `JsonSchema` derive; its `steps` items become a
//! `oneOf` over the registered step kinds ([`crate::engine::steps::KINDS`]), each built from the
//! kind's own shape plus the two keys every step has (`action`, `timeout_ms`). The committed copy
//! (`scenarios/scenario.schema.json`) is checked against this output by `tests/schema.rs`, and
//! `rtc-harness schema` prints it.
//!
//! A schema only sees shapes. What it cannot express is left to `rtc-harness check` (see
//! [`LIMITS`]).

use super::ScenarioFile;
use crate::engine::steps::KINDS;
use serde_json::{Map, Value, json};

/// What the schema does not check: every scenario file should also pass `rtc-harness check`.
pub const LIMITS: &str = "A JSON Schema checks shapes only. `rtc-harness check` also checks: \
     references between tables (peer ids in steps, [network.peers] and [[expect]], data-channel \
     labels of send steps, connection ids of [[expect]]), the order of steps (a peer used after \
     it was closed, one connection per peer), rules between keys (ICE timers only on bots, \
     fresh_browser only on browsers, a connect step needs data_channel or media, set_network \
     needs a [network] table, a step's timeout_ms at most the scenario's timeout_s), state \
     names per state machine, candidate types and ICE server URL schemes.";

/// The JSON Schema (draft 7) of a scenario file, with every object's keys sorted so the
/// output is stable.
pub fn scenario_schema() -> Value {
    // Draft 7, not schemars' default 2020-12: editor validators (taplo's among them) support
    // the older drafts more widely; not tried in an editor here.
    let mut root = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<ScenarioFile>()
        .to_value();
    root["title"] = json!("rtc-harness scenario file");
    root["description"] = json!(format!(
        "A scenario file of rtc-harness (TOML): the peers, the steps run in order and the \
         expectations checked afterwards. {LIMITS}"
    ));
    let mut defs = root
        .get_mut("definitions")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let variants: Vec<Value> = KINDS
        .iter()
        .map(|kind| {
            // A kind's schema comes in schemars' default draft (2020-12): its `$defs` and the
            // references to them move to draft 7's `definitions`.
            let mut own = draft07_refs((kind.schema)().to_value());
            if let Some(Value::Object(kind_defs)) = own.get_mut("definitions").map(Value::take) {
                for (name, def) in kind_defs {
                    match defs.get(&name) {
                        Some(existing) if *existing != def => panic!(
                            "step kind {:?}: schema definition {name:?} differs from another of \
                             the same name",
                            kind.action
                        ),
                        _ => {
                            defs.insert(name, def);
                        }
                    }
                }
            }
            step_variant(kind.action, kind.summary, &own)
        })
        .collect();
    root["properties"]["steps"]["items"] = json!({ "oneOf": variants });
    root["properties"]["steps"]["description"] = json!(
        "Steps, run in order: each a table whose `action` names its kind, with the keys of that \
         kind (one `oneOf` branch per kind)."
    );
    if !defs.is_empty() {
        root["definitions"] = Value::Object(defs);
    }
    sorted(root)
}

/// `$defs` renamed `definitions`, and every `$ref` to `#/$defs/X` pointed at `#/definitions/X`.
fn draft07_refs(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("$defs", v) => ("definitions".to_owned(), draft07_refs(v)),
                    ("$ref", Value::String(r)) => {
                        let r = match r.strip_prefix("#/$defs/") {
                            Some(name) => format!("#/definitions/{name}"),
                            None => r,
                        };
                        (k, Value::String(r))
                    }
                    (_, v) => (k, draft07_refs(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(draft07_refs).collect()),
        other => other,
    }
}

/// One `oneOf` branch: `action` fixed to the kind, `timeout_ms`, and the kind's own keys.
fn step_variant(action: &str, summary: &str, own: &Value) -> Value {
    let mut properties = Map::new();
    properties.insert(
        "action".into(),
        json!({ "const": action, "description": "The step kind." }),
    );
    properties.insert(
        "timeout_ms".into(),
        json!({
            "type": "integer",
            "minimum": 1,
            "description": "Deadline of this step, ms (at most the scenario's timeout_s; default: \
                            what is left of timeout_s).",
        }),
    );
    if let Some(Value::Object(p)) = own.get("properties") {
        properties.extend(p.clone());
    }
    let mut required = vec![json!("action")];
    if let Some(Value::Array(r)) = own.get("required") {
        required.extend(r.iter().cloned());
    }
    json!({
        "title": action,
        "description": summary,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// `value` with every object's keys in sorted order (arrays keep their order), and rustdoc
/// links in descriptions (`` [`crate::lab`] ``) turned into plain code spans.
fn sorted(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(plain_links(&s)),
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `` [`a::b`] `` → `` `b` `` (a path's last segment); other text unchanged.
fn plain_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        let after = &rest[start + 2..];
        match after.find("`]") {
            Some(end) if after[..end].contains("::") && !after[..end].contains(' ') => {
                out.push_str(&rest[..start]);
                let path = &after[..end];
                out.push('`');
                out.push_str(path.rsplit("::").next().unwrap_or(path));
                out.push('`');
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_kind_is_one_branch_with_action_fixed() {
        let schema = scenario_schema();
        let branches = schema["properties"]["steps"]["items"]["oneOf"]
            .as_array()
            .expect("steps.items.oneOf");
        let actions: Vec<&str> = branches
            .iter()
            .map(|b| b["properties"]["action"]["const"].as_str().unwrap())
            .collect();
        let kinds: Vec<&str> = KINDS.iter().map(|k| k.action).collect();
        assert_eq!(actions, kinds);
        for b in branches {
            assert_eq!(b["additionalProperties"], json!(false));
            assert_eq!(b["required"][0], json!("action"));
            assert_eq!(b["properties"]["timeout_ms"]["minimum"], json!(1));
        }
    }

    #[test]
    fn the_connect_branch_has_its_keys_and_required_ones() {
        let schema = scenario_schema();
        let connect = &schema["properties"]["steps"]["items"]["oneOf"][0];
        assert_eq!(connect["title"], json!("connect"));
        assert_eq!(
            connect["required"],
            json!(["action", "offerer", "answerer"])
        );
        assert!(connect["properties"]["data_channel"].is_object());
    }

    #[test]
    fn it_is_draft_7_and_every_reference_resolves() {
        let schema = scenario_schema();
        assert_eq!(
            schema["$schema"],
            json!("http://json-schema.org/draft-07/schema#")
        );
        let text = serde_json::to_string(&schema).unwrap();
        assert!(!text.contains("$defs"), "a draft 2020-12 `$defs` is left");
        for r in text.split("\"$ref\":\"").skip(1) {
            let name = r.split('"').next().unwrap();
            let name = name.strip_prefix("#/definitions/").expect(name);
            assert!(schema["definitions"][name].is_object(), "unresolved {name}");
        }
    }

    #[test]
    fn rustdoc_links_become_code_spans() {
        assert_eq!(
            plain_links("see [`crate::lab`] and [`Plan`], `[ice] trickle`"),
            "see `lab` and [`Plan`], `[ice] trickle`"
        );
    }

    #[test]
    fn output_is_stable() {
        assert_eq!(
            serde_json::to_string(&scenario_schema()).unwrap(),
            serde_json::to_string(&scenario_schema()).unwrap()
        );
    }
}
