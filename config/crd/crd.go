// Package crd embeds the CustomResourceDefinitions that `make manifests` generates from the markers in
// api/, so code that validates objects without an API server (the webhook's file source) reads the very
// file the API server is given, and can never drift from it.
package crd

import _ "embed"

// OpenIDConnects is bases/authentication.clustertrust.io_openidconnects.yaml, verbatim.
//
//go:embed bases/authentication.clustertrust.io_openidconnects.yaml
var OpenIDConnects []byte
