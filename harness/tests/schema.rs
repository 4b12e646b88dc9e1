//! The JSON Schema of scenario files: the committed copy is what the types generate, every
//! shipped scenario and template validates against it, and every bad scenario that is a shape
//! error is rejected by it.

use std::path::{Path, PathBuf};

const REGENERATE: &str = "regenerate it with `cargo run -p rtc-harness --bin rtc-harness -- \
                          schema > scenarios/scenario.schema.json`";

/// The bad scenarios a JSON Schema cannot reject, with why: everything else in
/// `tests/bad-scenarios/` must fail validation (a new bad file is a shape error until listed
/// here).
const NOT_SHAPE_ERRORS: &[(&str, &str)] = &[
    (
        "mesh-already-in-call.toml",
        "rule between steps: who is in the call",
    ),
    (
        "mesh-one-peer.toml",
        "rule between steps: a call of one (a later step may join one peer)",
    ),
    ("mesh-peer-twice.toml", "rule inside a list: distinct peers"),
    (
        "mesh-send-ambiguous.toml",
        "reference: which connection a peer's channel is on",
    ),
    (
        "mesh-nothing-to-negotiate.toml",
        "rule between keys: data_channel or media",
    ),
    (
        "load-unknown-kind.toml",
        "peer kinds are open: whether a launcher exists is known at run time only",
    ),
    (
        "load-with-peers.toml",
        "rule between tables: [load] makes its own peers",
    ),
    (
        "load-ramp-too-slow.toml",
        "rule between keys: ramp, hold and timeout_s",
    ),
    (
        "app-placeholder-without-app.toml",
        "rule between tables: {app} needs [app]",
    ),
    (
        "app-without-command-or-url.toml",
        "rule between keys: command or url",
    ),
    (
        "connect-page-peer.toml",
        "reference: the named peer is a page peer",
    ),
    (
        "join-app-without-signaling.toml",
        "rule between tables: needs [app.signaling]",
    ),
    ("join-app-browser.toml", "reference: the named peer's kind"),
    (
        "app-signaling-unknown-placeholder.toml",
        "rule inside a string: a known placeholder",
    ),
    (
        "join-app-offerer-without-call.toml",
        "rule between tables: the app's messages name their target",
    ),
    (
        "app-signaling-offer-answer-alike.toml",
        "rule between keys: offer and answer told apart",
    ),
    (
        "join-app-without-room.toml",
        "rule between tables: the app's messages name a room",
    ),
    (
        "restart-app-without-command.toml",
        "rule between tables: needs [app] command",
    ),
    (
        "app-signaling-websocket-auth.toml",
        "rule between keys: auth is for socket.io",
    ),
    (
        "app-signaling-offer-without-description.toml",
        "rule inside a list: one {description}",
    ),
    (
        "app-token-both.toml",
        "rule between keys: secret or login_url",
    ),
    (
        "page-connection-bad-id.toml",
        "reference: page connection ids are pcN",
    ),
    ("page-step-on-bot.toml", "reference: the named peer's kind"),
    ("url-on-bot.toml", "rule between keys: url on browsers only"),
    ("wait-for-both.toml", "rule between keys: selector or js"),
    (
        "unknown-kind.toml",
        "peer kinds are open (a user crate registers its own): whether a launcher exists for the kind is known at run time only",
    ),
    ("syntax-error.toml", "not TOML at all: nothing to validate"),
    (
        "connect-without-channel.toml",
        "rule between keys: data_channel or media",
    ),
    (
        "expect-unknown-connection.toml",
        "reference: connection id of another step",
    ),
    ("network-unknown-peer.toml", "reference: peer id"),
    ("send-without-channel.toml", "reference: data-channel label"),
    (
        "set-network-without-lab.toml",
        "rule between tables: needs [network]",
    ),
    (
        "timer-on-browser.toml",
        "rule between keys: ICE timers on bots only",
    ),
    ("unknown-peer.toml", "reference: peer id"),
    (
        "kill-driver-of-bot.toml",
        "rule between keys: process = driver needs a browser peer",
    ),
    (
        "restart-signaling-before-connect.toml",
        "rule between steps: needs an earlier connection",
    ),
    (
        "unknown-state.toml",
        "state names are checked per state machine",
    ),
    ("freeze-a-bot.toml", "reference: the named peer's kind"),
    (
        "restart-turn-without-turn.toml",
        "rule between tables: needs [ice.embedded_turn]",
    ),
    (
        "kill-twice.toml",
        "order of steps: killed by an earlier step",
    ),
    (
        "set-network-recovers-while-cut.toml",
        "rule between keys: recovers_within_ms needs loss_pct below 100",
    ),
    (
        "wait-state-bad-value.toml",
        "state names are checked per state machine",
    ),
    (
        "wait-state-on-killed-peer.toml",
        "order of steps: killed by an earlier step",
    ),
    (
        "wait-state-two-machines.toml",
        "rule between keys: exactly one of the four machines",
    ),
    (
        "wait-state-unknown-connection.toml",
        "reference: connection id of another step",
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn generated() -> String {
    let mut text = serde_json::to_string_pretty(&rtc_harness::scenario::scenario_schema()).unwrap();
    text.push('\n');
    text
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(&generated()).unwrap();
    jsonschema::validator_for(&schema).expect("the generated schema is a valid JSON Schema")
}

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
}

/// The file as JSON, or `None` when it is not TOML.
fn as_json(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let table: toml::Table = text.parse().ok()?;
    Some(serde_json::to_value(table).unwrap())
}

fn errors(v: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn committed_schema_is_what_the_types_generate() {
    let path = root().join("scenarios/scenario.schema.json");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", path.display()));
    assert!(
        committed == generated(),
        "{} differs from the schema the types generate; {REGENERATE}",
        path.display()
    );
}

#[test]
fn every_scenario_and_template_validates() {
    let v = validator();
    let mut files = Vec::new();
    toml_files(&root().join("scenarios"), &mut files);
    toml_files(&root().join("harness/templates"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut failures = Vec::new();
    for f in &files {
        let doc = as_json(f).unwrap_or_else(|| panic!("{}: not TOML", f.display()));
        let errs = errors(&v, &doc);
        if !errs.is_empty() {
            failures.push(format!("{}:\n  {}", f.display(), errs.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_bad_scenario_that_is_a_shape_error_is_rejected() {
    let v = validator();
    let mut files = Vec::new();
    toml_files(&root().join("harness/tests/bad-scenarios"), &mut files);
    files.sort();
    let mut shape = 0;
    let mut accepted = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        if NOT_SHAPE_ERRORS.iter().any(|(n, _)| *n == name) {
            continue;
        }
        shape += 1;
        let doc = as_json(f).unwrap_or_else(|| panic!("{name}: not TOML; list it as such"));
        if v.is_valid(&doc) {
            accepted.push(name.to_owned());
        }
    }
    assert!(shape >= 5, "only {shape} shape errors found in {files:?}");
    assert!(
        accepted.is_empty(),
        "the schema accepts these bad scenarios: {accepted:?} (tighten the schema, or list them \
         in NOT_SHAPE_ERRORS with the reason)"
    );
    for (n, _) in NOT_SHAPE_ERRORS {
        assert!(
            files.iter().any(|f| f.file_name().unwrap() == *n),
            "NOT_SHAPE_ERRORS names {n}, which is not in tests/bad-scenarios/"
        );
    }
}

/// The schema really rejects something: a step of an unknown kind, and a key of another kind.
#[test]
fn schema_rejects_an_unknown_action_and_a_key_of_another_action() {
    let v = validator();
    let base = |step: serde_json::Value| {
        serde_json::json!({
            "name": "x",
            "peers": [{ "id": "a", "kind": "bot" }],
            "steps": [step],
        })
    };
    assert!(v.is_valid(&base(serde_json::json!({ "action": "wait", "ms": 5 }))));
    assert!(!v.is_valid(&base(serde_json::json!({ "action": "teleport" }))));
    assert!(!v.is_valid(&base(
        serde_json::json!({ "action": "wait", "ms": 5, "offerer": "a" })
    )));
    assert!(!v.is_valid(&base(
        serde_json::json!({ "action": "wait", "ms": 5, "timeout_ms": 0 })
    )));
}
