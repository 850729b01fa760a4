//! Where a vendor document is silent and a client reads something anyway:
//! the [`Assumption`] each client lists in its `ASSUMED` (gathered by
//! `providers/registry/contract.rs`).

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
