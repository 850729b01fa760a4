//! Entry points for fuzzing the parsers every vendor answer goes through
//! (used by `fuzz/fuzz_targets/vendor_answers.rs` and a randomized test): the
//! vendor clients' and the connection Secret's, so it sits above both
//! `providers` and `controllers`.

/// Feeds `bytes` to every vendor answer parser; must never panic.
pub fn parse_vendor_answer(bytes: &[u8]) {
    let _ = crate::providers::base::http::parse_error_body_for_fuzzing(bytes);
    let _ = crate::providers::clients::infrai::decode_for_fuzzing(bytes);
    let _ = serde_json::from_slice::<crate::providers::clients::infrai_byok::ByokConfig>(bytes);
    let _ = serde_json::from_slice::<crate::providers::clients::infrai_byok::ByokKey>(bytes);
    let _ = serde_json::from_slice::<crate::providers::clients::infrai_byok::StagedRotation>(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let uri = crate::providers::ConnectionUri::new(text);
        let _ = crate::controllers::secret::ConnectionDetails::parse(Some(&uri), None);
    }
}
