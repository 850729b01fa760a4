//! Where a vendor document is silent and a client reads something anyway.
//!
//! Each client lists its assumptions next to its code (`ASSUMED` in each
//! vendor module). They are the remaining guesses: every field a client reads
//! from an answer the document shows no body for, and every behaviour the
//! document leaves open that a client relies on. An emulator in strict mode
//! ([`crate::emulator::documented`]) serves the documented fields plus exactly
//! these, so a client that reads anything else fails its contract tests.

/// One point where a document is silent and what the client assumes there.
#[derive(Debug)]
pub struct Assumption {
    /// The endpoint's method as the client sends it; empty for "any" (the
    /// Supabase document names no methods).
    pub method: &'static str,
    /// The endpoint's path as the document writes it, with `{placeholders}`.
    pub path: &'static str,
    /// Answer fields the client reads that the document does not show, as
    /// dotted paths (`database.host`, `[].id` for the items of an array).
    pub reads: &'static [&'static str],
    /// What the document leaves open, what the client assumes, and why.
    pub why: &'static str,
}

impl Assumption {
    /// Whether this assumption is about `method` on the documented `path`.
    pub fn applies_to(&self, method: &str, path: &str) -> bool {
        self.path == path && (self.method.is_empty() || self.method.eq_ignore_ascii_case(method))
    }
}

/// Every client's assumptions, by emulated API name (`infrai` twice: its
/// database and its BYOK modules).
pub const ALL: &[(&str, &[Assumption])] = &[
    ("infrai", super::infrai::ASSUMED),
    ("infrai", super::infrai_byok::ASSUMED),
    ("supabase", super::supabase::ASSUMED),
    ("db9", super::db9::ASSUMED),
    ("capydb", super::capydb::ASSUMED),
];

/// The assumptions of the emulated API `api`.
pub fn of(api: &str) -> Vec<&'static Assumption> {
    ALL.iter()
        .filter(|(name, _)| *name == api)
        .flat_map(|(_, assumed)| assumed.iter())
        .collect()
}
