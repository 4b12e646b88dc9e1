//! The normalized timeline of a bot↔bot run: for each peer, the order of its states per W3C
//! state machine and its data-channel milestones. Times, ports and candidates are left out
//! (they change every run); what remains must not.

use rtc_harness::runner::{Harness, Options};
use rtc_harness::timeline::{Endpoint, EventKind, StateMachine};
use std::fmt::Write;
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_to_bot_timeline() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/bot-bot.toml");
    let plan = rtc_harness::scenario::load(&file).unwrap();
    let harness = Harness::start(Options::default()).await.unwrap();
    let r = harness.engine.run(&plan, 1, &|_, _| {}).await;
    assert_eq!(
        r.verdict,
        rtc_harness::engine::Verdict::Pass,
        "{:?}",
        r.reason
    );
    let t = r.timeline.until(r.end_of_steps_ms);
    let mut out = String::new();
    let connection = &plan.connections[0].id;
    for peer in ["alice", "bob"] {
        let ep = Endpoint::new(peer, connection);
        writeln!(out, "{peer} in {connection}:").unwrap();
        for m in StateMachine::ALL {
            let seq: Vec<&str> = t.states(ep, m).into_iter().map(|(_, s)| s).collect();
            writeln!(out, "  {m}: {}", seq.join(" -> ")).unwrap();
        }
        let milestones: Vec<String> = t
            .of(ep)
            .filter_map(|e| match &e.event {
                EventKind::CreateOffer => Some("createOffer".to_string()),
                EventKind::OfferApplied => Some("offer applied".into()),
                EventKind::AnswerApplied => Some("answer applied".into()),
                EventKind::DataChannelOpen { label } => {
                    Some(format!("data channel '{label}' open"))
                }
                EventKind::MessagesSent { label, count } => {
                    Some(format!("sent {count} on '{label}'"))
                }
                _ => None,
            })
            .collect();
        writeln!(out, "  milestones: {}", milestones.join(", ")).unwrap();
        writeln!(
            out,
            "  intact in-order messages received: {}",
            t.intact_in_order_received(ep)
        )
        .unwrap();
    }
    insta::assert_snapshot!(out);
}

/// `mark` steps land on the timeline in order, between the steps around them, and reach the
/// JSON (`marks`) and the HTML report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_are_on_the_timeline_in_the_json_and_in_the_html() {
    let plan = rtc_harness::scenario::parse(
        Path::new("marks.toml"),
        r#"
name = "marks"
[[peers]]
id = "a"
kind = "bot"
[[peers]]
id = "b"
kind = "bot"
[[steps]]
action = "mark"
name = "before"
[[steps]]
action = "connect"
offerer = "a"
answerer = "b"
data_channel = "x"
[[steps]]
action = "mark"
name = "after <connect>"
"#,
    )
    .unwrap();
    let harness = Harness::start(Options::default()).await.unwrap();
    let r = harness.engine.run(&plan, 1, &|_, _| {}).await;
    assert_eq!(
        r.verdict,
        rtc_harness::engine::Verdict::Pass,
        "{:?}",
        r.reason
    );
    let names: Vec<&str> = r.marks.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["before", "after <connect>"]);
    let connected = r
        .timeline
        .events()
        .iter()
        .find(|e| matches!(&e.event, EventKind::State { machine: StateMachine::Connection, state } if state == "connected"))
        .map(|e| e.t_ms)
        .expect("connected");
    assert!(
        r.marks[0].t_ms <= connected && connected <= r.marks[1].t_ms,
        "{:?}",
        r.marks
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["marks"][1]["name"], "after <connect>");
    let html = rtc_harness::report::html::render("t", std::slice::from_ref(&r), &[], None).unwrap();
    assert!(
        html.contains("<ul class=\"marks\">"),
        "no marks list in the HTML"
    );
    assert!(
        html.contains("after &lt;connect&gt;"),
        "mark name not escaped into the HTML"
    );
}
