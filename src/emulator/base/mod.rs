//! The bottom of `emulator/`: what every emulated vendor API is built on and
//! served with (the wire helpers, the scaffold, real databases, injected
//! faults, strict mode and the state file). It uses only `providers` and `api`.

pub mod documented;
pub mod faults;
pub mod persist;
pub mod real;
pub(super) mod scaffold;
pub(super) mod wire;
