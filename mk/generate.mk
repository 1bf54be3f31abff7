# Code generation for Strata's API types (deepcopy functions, CRD manifests).
# Included by the top-level Makefile; paths are relative to the repository root.

.PHONY: generate verify-generate

## generate: regenerate deepcopy functions and CRD manifests under api/
generate:
	hack/generate.sh

## verify-generate: fail if the committed generated files under api/ are stale
verify-generate:
	@set -eu; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp -R go.mod go.sum api hack "$$tmp"/; \
	hack/generate.sh "$$tmp"; \
	diff -ru api "$$tmp/api" || { echo 'generated files under api/ are stale: run make generate' >&2; exit 1; }
