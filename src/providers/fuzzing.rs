//! Entry points for fuzzing the parsers every vendor answer goes through
//! (used by `fuzz/fuzz_targets/vendor_answers.rs` and a randomized test).

/// Feeds `bytes` to every vendor answer parser; must never panic.
pub fn parse_vendor_answer(bytes: &[u8]) {
    let _ = super::http::parse_error_body_for_fuzzing(bytes);
    let _ = super::infrai::decode_for_fuzzing(bytes);
    let _ = serde_json::from_slice::<super::infrai_byok::ByokConfig>(bytes);
    let _ = serde_json::from_slice::<super::infrai_byok::ByokKey>(bytes);
    let _ = serde_json::from_slice::<super::infrai_byok::StagedRotation>(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let uri = super::ConnectionUri::new(text);
        let _ = crate::controllers::secret::ConnectionDetails::parse(Some(&uri), None);
    }
}
