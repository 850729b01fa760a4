//! Coverage-guided fuzzing of every parser a vendor answer goes through.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dbops::fuzzing::parse_vendor_answer(data);
});
