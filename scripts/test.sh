#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test.
# End-to-end tests need a cluster and are reported as ignored here; run them with
# `cargo test --test e2e -- --ignored` when KUBECONFIG points at one.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
