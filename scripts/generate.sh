#!/usr/bin/env bash
# Regenerates every generated file from its source: the CRDs (from the Rust
# types) into crds/, the chart and deploy/, and deploy/dbops.yaml (the chart's
# default render). Tests fail when any of them drifts.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -- crdgen --out-dir crds
cp crds/*.yaml charts/dbops/crds/
cargo run -q -- crdgen > deploy/crds.yaml
helm=$(command -v helm || echo .tools/helm)
"$helm" template dbops charts/dbops --namespace dbops-system --kube-version 1.33.0 > deploy/dbops.yaml
