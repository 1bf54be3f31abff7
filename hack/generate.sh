#!/usr/bin/env bash
# Regenerates the deepcopy functions and CRD manifests of Strata's API types.
#
# Usage: hack/generate.sh [ROOT]
#
# ROOT is a copy of the module to generate in (default: this repository);
# verify-generate passes a temporary copy.
#
# controller-gen runs through `go run pkg@version`, which builds it in its own
# module: the version pinned here never enters, or alters, our go.mod.
set -euo pipefail

CONTROLLER_GEN_VERSION=v0.23.0
root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root"

controller_gen() {
	if [[ -n "${CONTROLLER_GEN:-}" ]]; then
		"$CONTROLLER_GEN" "$@"
	else
		go run "sigs.k8s.io/controller-tools/cmd/controller-gen@${CONTROLLER_GEN_VERSION}" "$@"
	fi
}

# A removed kind must not leave its manifest behind.
rm -f api/crds/*.yaml

controller_gen \
	object:headerFile=hack/boilerplate.go.txt \
	crd \
	paths=./api/... \
	output:crd:dir=./api/crds
