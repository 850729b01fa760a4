#!/usr/bin/env bash
# Installs the CRDs and the examples into the current kube context, then runs
# the operator out of cluster with the built-in vendor API emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
kubectl apply -f crds/
kubectl wait --for condition=established --timeout=60s -f crds/
kubectl apply -f deploy/examples/
exec cargo run --release -- run "$@"
