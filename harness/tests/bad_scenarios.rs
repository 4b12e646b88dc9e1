//! Invalid scenario files: each must be rejected with an error naming file, line, column and
//! key. One insta snapshot per file in `tests/bad-scenarios/`.

#[test]
fn bad_scenarios_are_rejected_with_location_and_key() {
    insta::glob!("bad-scenarios/*.toml", |path| {
        let name = std::path::Path::new("bad-scenarios").join(path.file_name().unwrap());
        let text = std::fs::read_to_string(path).unwrap();
        let err = rtc_harness::scenario::parse(&name, &text)
            .expect_err("an invalid scenario must be rejected");
        insta::assert_snapshot!(err.to_string());
    });
}
