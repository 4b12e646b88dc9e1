use super::*;
use crate::engine::steps::{Connect, SendMessages};

/// Step `i` of a plan as its kind's type (panics if it is another kind).
fn step<T: 'static>(plan: &Plan, i: usize) -> &T {
    let any: &dyn std::any::Any = plan.steps[i].step.as_ref();
    any.downcast_ref::<T>()
        .unwrap_or_else(|| panic!("step {i} is {:?}", plan.steps[i].step))
}

/// The example scenario of the foundation issue, verbatim.
const ISSUE_EXAMPLE: &str = include_str!("../../../scenarios/bot-offers-chromium.toml");

#[test]
fn the_issue_example_parses_into_the_expected_plan() {
    let plan = parse(Path::new("s.toml"), ISSUE_EXAMPLE).unwrap();
    assert_eq!(plan.timeout, std::time::Duration::from_secs(30));
    assert_eq!(plan.peers.len(), 2);
    assert_eq!(plan.peers[1].kind, PeerKind::Chromium);
    assert_eq!(plan.steps.len(), 3);
    let send: &SendMessages = step(&plan, 2);
    assert_eq!(
        (
            send.from.as_str(),
            send.to.as_str(),
            send.messages,
            send.bytes
        ),
        ("chrome", "bot", 20, 1024)
    );
    assert!(step::<Connect>(&plan, 0).trickle);
    assert_eq!(plan.connections[0].id, "bot~chrome");
    assert_eq!(plan.expectations[0].setup_ms_max, Some(5000.0));
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(line_column("ab\ncé x", 7), (2, 4));
    assert_eq!(line_column("", 0), (1, 1));
}

#[test]
fn a_peer_may_be_in_several_connections_but_a_pair_in_one() {
    let three = r#"
name = "mesh by hand"
[[peers]]
id = "a"
kind = "bot"
[[peers]]
id = "b"
kind = "bot"
[[peers]]
id = "c"
kind = "bot"
[[steps]]
action = "connect"
offerer = "a"
answerer = "b"
data_channel = "x"
[[steps]]
action = "connect"
offerer = "a"
answerer = "c"
data_channel = "x"
"#;
    let plan = parse(Path::new("m.toml"), three).unwrap();
    let ids: Vec<&str> = plan.connections.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a~b", "a~c"]);
    let again = format!(
        "{three}[[steps]]\naction = \"connect\"\nofferer = \"b\"\nanswerer = \"a\"\ndata_channel = \"y\"\n"
    );
    let e = parse(Path::new("m.toml"), &again).unwrap_err();
    assert_eq!(e.key, "steps[2].answerer");
    assert!(
        e.message.contains("already connected by step"),
        "{}",
        e.message
    );
}

#[test]
fn a_mesh_step_makes_one_connection_per_pair_named_newcomer_tilde_member() {
    let text = r#"
name = "mesh"
[[peers]]
id = "a"
kind = "bot"
[[peers]]
id = "b"
kind = "bot"
[[peers]]
id = "c"
kind = "bot"
[[peers]]
id = "d"
kind = "bot"
[[steps]]
action = "mesh"
peers = ["a", "b", "c"]
data_channel = "x"
[[steps]]
action = "mesh"
peers = ["d"]
data_channel = "x"
"#;
    let plan = parse(Path::new("m.toml"), text).unwrap();
    let pairs: Vec<(&str, &str, &str)> = plan
        .connections
        .iter()
        .map(|c| (c.id.as_str(), c.offerer.as_str(), c.answerer.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("b~a", "b", "a"),
            ("c~a", "c", "a"),
            ("c~b", "c", "b"),
            ("d~a", "d", "a"),
            ("d~b", "d", "b"),
            ("d~c", "d", "c"),
        ]
    );
    assert!(
        plan.connections
            .iter()
            .all(|c| c.call.as_deref() == Some("mesh"))
    );
}

#[test]
fn independent_pairs_are_fine() {
    let text = r#"
name = "two pairs"
[[peers]]
id = "a"
kind = "bot"
[[peers]]
id = "b"
kind = "bot"
[[peers]]
id = "c"
kind = "bot"
[[peers]]
id = "d"
kind = "bot"
[[steps]]
action = "connect"
offerer = "a"
answerer = "b"
data_channel = "x"
[[steps]]
action = "connect"
offerer = "d"
answerer = "c"
data_channel = "y"
trickle = false
"#;
    let plan = parse(Path::new("p.toml"), text).unwrap();
    let second: &Connect = step(&plan, 1);
    assert!(!second.trickle);
    assert_eq!(second.connection.offerer, "d");
}

#[test]
fn steps_on_a_closed_peer_are_impossible() {
    let base = r#"
name = "closed"
[[peers]]
id = "a"
kind = "bot"
[[peers]]
id = "b"
kind = "bot"
[[steps]]
action = "connect"
offerer = "a"
answerer = "b"
media = ["audio"]
[[steps]]
action = "close"
peer = "b"
"#;
    for (step, key) in [
        (
            "action = \"add_track\"\npeer = \"a\"\nkind = \"video\"",
            "steps[2].peer",
        ),
        ("action = \"restart_ice\"\npeer = \"a\"", "steps[2].peer"),
    ] {
        let text = format!("{base}[[steps]]\n{step}\n");
        let e = parse(Path::new("c.toml"), &text).unwrap_err();
        assert_eq!(e.key, key);
        assert_eq!(e.message, "peer \"b\" was closed by an earlier step");
    }
}

const CUSTOM_KIND: &str = r#"
name = "own kind"
[[peers]]
id = "mine"
kind = "my-endpoint"
[[peers]]
id = "bot"
kind = "bot"
"#;

#[test]
fn a_kind_of_ones_own_loads_only_where_a_launcher_is_registered_for_it() {
    let mine = PeerKind::Custom("my-endpoint".into());
    let kinds = [PeerKind::Bot, mine.clone()];
    let plan = parse_with_kinds(Path::new("s.toml"), CUSTOM_KIND, &kinds).unwrap();
    assert_eq!(plan.peers[0].kind, mine);
    assert_eq!(plan.peers[0].kind.as_str(), "my-endpoint");
    let err = parse(Path::new("s.toml"), CUSTOM_KIND).unwrap_err();
    assert_eq!(
        err.to_string(),
        "s.toml:5:8: key `peers[0].kind`: no launcher for peer kind \"my-endpoint\" (kinds: bot, chromium, firefox)"
    );
}

#[test]
fn bot_and_browser_keys_stay_on_their_kinds() {
    let kinds = [PeerKind::Bot, PeerKind::Custom("my-endpoint".into())];
    for (key, expected) in [
        (
            "ice_check_interval_ms = 5",
            "ICE timers can only be set on kind \"bot\"",
        ),
        (
            "fresh_browser = true",
            "fresh_browser only applies to browser kinds",
        ),
    ] {
        let text = CUSTOM_KIND.replace(
            "kind = \"my-endpoint\"",
            &format!("kind = \"my-endpoint\"\n{key}"),
        );
        let err = parse_with_kinds(Path::new("s.toml"), &text, &kinds).unwrap_err();
        assert!(err.message.contains(expected), "{key}: {err}");
    }
}

#[test]
fn peer_kinds_are_strings_in_files_reports_and_the_schema() {
    for (name, kind) in [
        ("bot", PeerKind::Bot),
        ("firefox", PeerKind::Firefox),
        ("my-endpoint", PeerKind::Custom("my-endpoint".into())),
    ] {
        assert_eq!(name.parse::<PeerKind>().unwrap(), kind);
        assert_eq!(
            serde_json::to_value(&kind).unwrap(),
            serde_json::json!(name)
        );
        assert_eq!(kind.to_string(), name);
    }
    for bad in ["", "Bot", "1st", "a b", "x_y"] {
        assert!(bad.parse::<PeerKind>().is_err(), "{bad:?}");
    }
    let schema = schemars::schema_for!(PeerKind);
    assert_eq!(schema.get("type"), Some(&serde_json::json!("string")));
}

#[test]
fn an_app_without_dir_runs_in_the_folder_of_a_bare_scenario_file_name() {
    // Defect: `rtc-harness run my.toml` made the app's folder "" ("is not a folder").
    let text = "name = \"x\"\n[app]\ncommand = [\"node\", \"s.js\"]\nenv = { PORT = \"{port}\" }\n[[peers]]\nid = \"p\"\nkind = \"chromium\"\nurl = \"{app}/\"\n";
    let plan = super::parse(std::path::Path::new("my.toml"), text).unwrap();
    assert_eq!(plan.app.unwrap().dir, std::path::PathBuf::from("."));
}
