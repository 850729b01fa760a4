//! The emulated vendor APIs, one module per API (`infrai_byok` is infrai's
//! `/v1/byok` module, mounted by `infrai`). They are built on
//! `emulator/base/` and know no other vendor's module.

pub mod capydb;
pub mod db9;
pub mod infrai;
pub mod infrai_byok;
pub mod supabase;
