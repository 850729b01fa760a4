//! The vendor clients, one module per vendor API (`infrai_byok` is infrai's
//! BYOK module, on top of the infrai client). They use `providers/base/`
//! alone: no client knows the registry or another vendor's client.

pub mod capydb;
pub mod db9;
pub mod infrai;
pub mod infrai_byok;
pub mod postgres;
pub mod supabase;
