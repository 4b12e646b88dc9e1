//! Property tests: hostile input from one client never breaks its own
//! connection nor anybody else's.
//!
//! Each property uses one runtime and one server for all its cases. Per case a
//! fresh "fuzz" client and its partner join a room; the fuzz client sends the
//! generated frame and must get exactly the reply the protocol prescribes (an
//! `error`, or a relay to its partner when the input happens to be valid),
//! then still answer a probe. Meanwhile a long-lived, well-behaved pair in
//! another room completes an offer/answer exchange every case.

mod common;

use std::cell::{Cell, RefCell};

use anyhow::{Context, Result, ensure};
use common::{Client, exchange, pair};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use rtc_signaling::protocol::{ClientMessage, ErrorCode, ServerMessage};
use rtc_signaling::{Config, Server};
use serde_json::{Map, Number, Value, json};

const CASES: u32 = 64;

/// Placeholder strings replaced with the real peer ids before sending.
const PARTNER: &str = "@partner";
const SELF: &str = "@self";

/// One frame a hostile client may send.
#[derive(Debug, Clone)]
enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// A long-lived pair of well-behaved clients in their own room.
struct GoodPair {
    a: Client,
    a_id: String,
    b: Client,
    b_id: String,
}

/// Everything one property run shares between its cases.
struct Harness {
    runtime: tokio::runtime::Runtime,
    server: Server,
    good: RefCell<Option<GoodPair>>,
    case: Cell<u64>,
}

impl Harness {
    fn new() -> Harness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let server = runtime
            .block_on(Server::bind(
                "127.0.0.1:0".parse().expect("address"),
                Config::default(),
            ))
            .expect("bind");
        Harness {
            runtime,
            server,
            good: RefCell::new(None),
            case: Cell::new(0),
        }
    }

    /// Runs `strategy` for [`CASES`] cases, each sending one frame per input.
    fn check<S>(self, strategy: S, frames: fn(S::Value) -> Vec<Frame>)
    where
        S: Strategy,
    {
        let mut runner = TestRunner::new(ProptestConfig {
            cases: CASES,
            failure_persistence: None,
            max_shrink_iters: 200,
            ..ProptestConfig::default()
        });
        let result = runner.run(&strategy, |value| {
            let frames = frames(value);
            self.runtime
                .block_on(self.run_case(frames))
                .map_err(|err| TestCaseError::fail(format!("{err:#}")))
        });
        let Harness {
            runtime, server, ..
        } = self;
        runtime.block_on(server.shutdown());
        if let Err(err) = result {
            panic!("{err}");
        }
    }

    async fn run_case(&self, frames: Vec<Frame>) -> Result<()> {
        let n = self.case.get() + 1;
        self.case.set(n);
        let url = self.server.ws_url();
        let good = self.good.borrow_mut().take();
        let mut good = match good {
            Some(good) => good,
            None => {
                let ((a, a_id), (b, b_id)) = pair(&url, &format!("good-{n}")).await?;
                GoodPair { a, a_id, b, b_id }
            }
        };
        let (fuzzed, exchanged) = tokio::join!(fuzz_case(&url, n, frames), async {
            exchange(&mut good.a, &good.a_id, &mut good.b, &good.b_id).await
        });
        // A pair that saw a failure may hold stray messages: replace it.
        if exchanged.is_ok() {
            *self.good.borrow_mut() = Some(good);
        }
        fuzzed.context("fuzzed client")?;
        exchanged.context("well-behaved pair in another room")
    }
}

/// What the server must do with one frame from the fuzz client `f`.
enum Expect {
    /// An `error` with this code to the sender.
    Error(ErrorCode),
    /// This message to the partner, nothing to the sender.
    ToPartner(ServerMessage),
}

fn expected(frame: &Frame, f_id: &str, p_id: &str) -> Expect {
    let limit = Config::default().max_message_bytes;
    let text = match frame {
        Frame::Binary(data) if data.len() > limit => return Expect::Error(ErrorCode::TooLarge),
        Frame::Binary(_) => return Expect::Error(ErrorCode::BadMessage),
        Frame::Text(text) if text.len() > limit => return Expect::Error(ErrorCode::TooLarge),
        Frame::Text(text) => text,
    };
    let Ok(msg) = serde_json::from_str::<ClientMessage>(text) else {
        return Expect::Error(ErrorCode::BadMessage);
    };
    let from = f_id.to_owned();
    let (to, relayed) = match msg {
        ClientMessage::Join { .. } => return Expect::Error(ErrorCode::AlreadyJoined),
        ClientMessage::Leave => {
            return Expect::ToPartner(ServerMessage::PeerLeft { peer_id: from });
        }
        ClientMessage::Offer { sdp, to } => (to, ServerMessage::Offer { sdp, from }),
        ClientMessage::Answer { sdp, to } => (to, ServerMessage::Answer { sdp, from }),
        ClientMessage::Candidate { candidate, to } => {
            (to, ServerMessage::Candidate { candidate, from })
        }
    };
    match to {
        None => Expect::ToPartner(relayed),
        Some(to) if to == p_id => Expect::ToPartner(relayed),
        Some(_) => Expect::Error(ErrorCode::UnknownPeer),
    }
}

/// Replaces the id placeholders in a text frame.
fn substitute(frame: Frame, f_id: &str, p_id: &str) -> Frame {
    match frame {
        Frame::Text(text) => Frame::Text(text.replace(PARTNER, p_id).replace(SELF, f_id)),
        binary => binary,
    }
}

async fn fuzz_case(url: &str, n: u64, frames: Vec<Frame>) -> Result<()> {
    let ((mut f, f_id), (mut p, p_id)) = pair(url, &format!("fuzz-{n}")).await?;
    for frame in frames {
        let frame = substitute(frame, &f_id, &p_id);
        let expect = expected(&frame, &f_id, &p_id);
        match &frame {
            Frame::Text(text) => f.send_text(text.clone()).await?,
            Frame::Binary(data) => f.send_binary(data.clone()).await?,
        }
        let left = match expect {
            Expect::Error(code) => {
                f.expect_error(code).await?;
                false
            }
            Expect::ToPartner(msg) => {
                let got = p.recv().await?;
                ensure!(got == msg, "partner expected {msg:?}, got {got:?}");
                matches!(msg, ServerMessage::PeerLeft { .. })
            }
        };
        // Both connections still work and hold no stray messages.
        f.probe().await?;
        p.probe().await?;
        if left {
            // Back in the room for the next frame.
            let (_, peers) = f.join(&format!("fuzz-{n}")).await?;
            ensure!(peers == vec![p_id.clone()], "{peers:?}");
            for client in [&mut f, &mut p] {
                client.expect_ready().await?;
            }
        }
    }
    Ok(())
}

/// Arbitrary JSON values, nested a few levels deep.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|x| Number::from_f64(x).map_or(Value::Null, Value::Number)),
        ".{0,16}".prop_map(Value::String),
        prop::sample::select(vec![PARTNER, SELF, "offer", "join", "type"])
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,8}", inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A plausible field value, including the id placeholders.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => "[a-z0-9 =:]{0,12}".prop_map(Value::String),
        2 => prop::sample::select(vec![PARTNER, SELF, "p1", "p999999"]).prop_map(|s| json!(s)),
        1 => Just(Value::Null),
        1 => Just(json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0})),
        1 => arb_json(),
    ]
}

fn field_key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "type",
        "room",
        "sdp",
        "to",
        "candidate",
        "from",
        "peer_id",
        "peers",
        "extra",
    ])
}

/// A valid client message, as JSON; `to` may name the partner, the sender
/// itself or nobody.
fn valid_message() -> impl Strategy<Value = Value> {
    let to = prop::option::of(
        prop::sample::select(vec![PARTNER, PARTNER, SELF, "p999999"]).prop_map(String::from),
    );
    let text = "[ -~]{0,24}";
    let candidate = prop::option::of(prop_oneof![
        Just(json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"})),
        Just(json!({})),
        prop::collection::vec(("[a-zA-Z]{1,8}", arb_json()), 0..4)
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
    ]);
    let message = prop_oneof![
        text.prop_map(|room| ClientMessage::Join {
            room,
            capacity: None
        }),
        (text, to.clone()).prop_map(|(sdp, to)| ClientMessage::Offer { sdp, to }),
        (text, to.clone()).prop_map(|(sdp, to)| ClientMessage::Answer { sdp, to }),
        (candidate, to).prop_map(|(candidate, to)| ClientMessage::Candidate { candidate, to }),
        Just(ClientMessage::Leave),
    ];
    message.prop_map(|msg| serde_json::to_value(msg).expect("encodable"))
}

/// Objects close to real messages: valid ones with a few fields removed or
/// replaced, and objects of plausible fields with a plausible `type`.
fn near_valid() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        6 => prop::sample::select(vec!["join", "offer", "answer", "candidate", "leave"])
            .prop_map(|s| json!(s)),
        1 => prop::sample::select(vec!["joined", "ready", "peer-left", "error", "Offer", "JOIN", ""])
            .prop_map(|s| json!(s)),
        1 => arb_json(),
    ];
    let assembled = (
        prop::option::weighted(0.9, kind),
        prop::collection::vec((field_key(), field_value()), 0..5),
    )
        .prop_map(|(kind, fields)| {
            let mut object = Map::new();
            if let Some(kind) = kind {
                object.insert("type".into(), kind);
            }
            for (key, value) in fields {
                object.insert(key.into(), value);
            }
            Value::Object(object)
        });
    // `None` removes the key, `Some` sets it.
    let edits = prop::collection::vec((field_key(), prop::option::of(field_value())), 0..3);
    let mutated = (valid_message(), edits).prop_map(|(mut message, edits)| {
        if let Value::Object(object) = &mut message {
            for (key, value) in edits {
                match value {
                    Some(value) => object.insert(key.into(), value),
                    None => object.remove(key),
                };
            }
        }
        message
    });
    prop_oneof![1 => assembled, 2 => mutated]
}

/// Text that is sometimes just over the size limit.
fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => any::<String>(),
        1 => (65537usize..70000).prop_map(|n| "x".repeat(n)),
        1 => (65537usize..70000).prop_map(|n| format!(r#"{{"type":"offer","sdp":"{}"}}"#, "y".repeat(n))),
    ]
}

#[test]
fn arbitrary_bytes_and_text() {
    Harness::new().check(
        (prop::collection::vec(any::<u8>(), 0..512), arb_text()),
        |(bytes, text)| {
            vec![
                Frame::Binary(bytes.clone()),
                Frame::Text(String::from_utf8_lossy(&bytes).into_owned()),
                Frame::Text(text),
            ]
        },
    );
}

#[test]
fn arbitrary_json_values() {
    Harness::new().check(arb_json(), |value| vec![Frame::Text(value.to_string())]);
}

#[test]
fn near_valid_messages() {
    Harness::new().check(prop::collection::vec(near_valid(), 1..4), |values| {
        values
            .into_iter()
            .map(|value| Frame::Text(value.to_string()))
            .collect()
    });
}
