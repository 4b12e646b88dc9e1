//! The normalized timeline of a bot↔bot run: for each peer, the order of its states per W3C
//! state machine and its data-channel milestones. Times, ports and candidates are left out
//! (they change every run); what remains must not.

use rtc_harness::runner::{Harness, Options};
use rtc_harness::timeline::{EventKind, StateMachine};
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
    for peer in ["alice", "bob"] {
        writeln!(out, "{peer}:").unwrap();
        for m in StateMachine::ALL {
            let seq: Vec<&str> = t.states(peer, m).into_iter().map(|(_, s)| s).collect();
            writeln!(out, "  {m}: {}", seq.join(" -> ")).unwrap();
        }
        let milestones: Vec<String> = t
            .of_peer(peer)
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
            t.intact_in_order_received(peer)
        )
        .unwrap();
    }
    insta::assert_snapshot!(out);
}
