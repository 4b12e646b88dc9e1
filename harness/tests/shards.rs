//! `--partition` and `merge` end to end, through the binary: two bot-only scenarios split over
//! two shards, each shard's JSON merged into one JUnit file; a shard of another harness version
//! refused. Needs loopback networking only (run it inside `ci/netns-run`, as `ci/test` does).

use std::path::Path;
use std::process::Command;

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rtc-harness"))
}

#[test]
fn shards_run_apart_and_merge_into_one_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let scenarios = [
        root.join("scenarios/bot-bot.toml"),
        root.join("scenarios/restart/bots.toml"),
    ];
    let mut names = Vec::new();
    for k in 1..=2 {
        let json = dir.path().join(format!("shard-{k}.json"));
        let out = harness()
            .arg("run")
            .args(&scenarios)
            .args(["--partition", &format!("slice:{k}/2"), "--json"])
            .arg(&json)
            .arg("--log-dir")
            .arg(dir.path().join("logs"))
            .output()
            .unwrap();
        assert!(out.status.success(), "shard {k}: {out:?}");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let runs = doc["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "slice:{k}/2 of 2 scenarios runs one");
        names.push(runs[0]["name"].as_str().unwrap().to_string());
    }
    assert_ne!(names[0], names[1], "the two shards ran the same scenario");
    let junit = dir.path().join("junit.xml");
    let out = harness()
        .arg("merge")
        .arg(dir.path().join("shard-1.json"))
        .arg(dir.path().join("shard-2.json"))
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert!(out.status.success(), "merge: {out:?}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase").count(), 2, "{xml}");
    for n in &names {
        assert!(xml.contains(n.as_str()), "{n} missing from {xml}");
    }

    let old = dir.path().join("old.json");
    std::fs::write(&old, r#"{"tool": "rtc-harness 0.0.0", "runs": []}"#).unwrap();
    let out = harness()
        .arg("merge")
        .arg(dir.path().join("shard-1.json"))
        .arg(&old)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rtc-harness 0.0.0"), "{err}");
}
