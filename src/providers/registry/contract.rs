//! Where a vendor document is silent and a client reads something anyway.
//!
//! Each client lists its assumptions next to its code (`ASSUMED` in each
//! vendor module). They are the remaining guesses: every field a client reads
//! from an answer the document shows no body for, and every behaviour the
//! document leaves open that a client relies on. An emulator in strict mode
//! (`emulator::documented`) serves the documented fields plus exactly
//! these, so a client that reads anything else fails its contract tests.

use crate::providers::base::assumption::Assumption;
use crate::providers::clients::{capydb, db9, infrai, infrai_byok, supabase};

/// Every client's assumptions, by emulated API name (`infrai` twice: its
/// database and its BYOK modules).
pub const ALL: &[(&str, &[Assumption])] = &[
    ("infrai", infrai::ASSUMED),
    ("infrai", infrai_byok::ASSUMED),
    ("supabase", supabase::ASSUMED),
    ("db9", db9::ASSUMED),
    ("capydb", capydb::ASSUMED),
];

/// The assumptions of the emulated API `api`.
pub fn of(api: &str) -> Vec<&'static Assumption> {
    ALL.iter()
        .filter(|(name, _)| *name == api)
        .flat_map(|(_, assumed)| assumed.iter())
        .collect()
}
