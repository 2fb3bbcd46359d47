// Package authn is clustertrust's request path: the TokenReview HTTP handler, the issuer router keyed by
// the token's unverified iss, per-issuer key sets, verification through k8s.io/apiserver's JWT
// authenticator, and the claim mapping that turns a verified token into a prefixed downstream user.
//
// It deliberately knows nothing of controllers, clients or the OpenIDConnect API types: the registry
// package translates objects into Config values and stores the resulting entries in a Router, and the
// handler only reads from it. Keep it that way; a depguard rule and TestImportBoundary enforce it.
package authn
