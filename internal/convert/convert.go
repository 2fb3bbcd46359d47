// Package convert translates between Kubernetes' structured authentication configuration (the jwt
// authenticators of an apiserver.config.k8s.io AuthenticationConfiguration, as kube-apiserver reads it
// from --authentication-config) and OpenIDConnect objects, field by field, both ways.
//
// The two do not say the same things. Where a field has no counterpart, or has one that is spelled
// differently, the conversion says so in a Note naming the authenticator, the field and the reason:
// notes are not errors, they are what a reviewer of the converted configuration must know. What cannot
// be written on the other side without changing who is authenticated as whom (a username prefix of
// "-", which an OpenIDConnect reads as "no prefix") is an error instead.
//
// Conversion is exact where it can be: an AuthenticationConfiguration converted to objects and back is
// equal to the original, less the noted fields, and a converted object authenticates the tokens
// kube-apiserver's JWT authenticator would, with the same user, groups, uid and extra, less
// clustertrust's documented guards and extras (the package tests prove it against k8s.io/apiserver's
// authenticator itself).
package convert

import (
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/apis/apiserver/install"
	authenticationcel "k8s.io/apiserver/pkg/authentication/cel"
)

// Kind is the kind of Kubernetes' structured authentication configuration.
const Kind = "AuthenticationConfiguration"

// IsAuthenticationConfiguration tells whether a document's apiVersion and kind name an
// AuthenticationConfiguration of any version (which FromAuthenticationConfiguration then accepts or
// refuses by version).
func IsAuthenticationConfiguration(gvk schema.GroupVersionKind) bool {
	return gvk.Group == apiserver.GroupName && gvk.Kind == Kind
}

// Note is something a converted configuration does not carry over as written: a field without a
// counterpart on the other side, or one written differently there.
type Note struct {
	// Index is the authenticator's position in the AuthenticationConfiguration's jwt list, or -1 for a
	// note about the configuration as a whole.
	Index int
	// Issuer is the authenticator's issuer URL.
	Issuer string
	// Object is the name of the OpenIDConnect the note is about, set when objects are converted to an
	// AuthenticationConfiguration (the other way, the authenticator's index and issuer name it).
	Object string
	// Field is the path of the field the note is about, in the terms of the side it was read from:
	// "issuer.egressSelectorType" for an AuthenticationConfiguration, "spec.jwks" for an OpenIDConnect.
	Field string
	// Message says what became of it and why, starting with a verb: "has no counterpart: ...".
	Message string
}

// String is the note as one line: `jwt[0] (https://issuer): issuer.egressSelectorType has no
// counterpart: ...`, or for an object converted to an authenticator
// `jwt[0] (https://issuer) from OpenIDConnect "hub": spec.jwks has no counterpart: ...`.
func (n Note) String() string {
	where := Kind
	if n.Index >= 0 {
		where = fmt.Sprintf("jwt[%d] (%s)", n.Index, n.Issuer)
	}
	if n.Object != "" {
		where += fmt.Sprintf(" from OpenIDConnect %q", n.Object)
	}
	if n.Field == "" {
		return where + ": " + n.Message
	}
	return where + ": " + n.Field + " " + n.Message
}

// scheme decodes every version of AuthenticationConfiguration the way kube-apiserver does
// (k8s.io/kubernetes pkg/kubeapiserver/options: install.Install and a strict codec factory), so a file
// kube-apiserver would refuse for an unknown or repeated field is refused here with the same error.
var scheme, codecs = func() (*runtime.Scheme, serializer.CodecFactory) {
	s := runtime.NewScheme()
	install.Install(s)
	return s, serializer.NewCodecFactory(s, serializer.EnableStrict)
}()

// compiler compiles the CEL of the configurations validated here; building one is expensive.
var compiler = sync.OnceValue(func() authenticationcel.Compiler { return authenticationcel.NewDefaultCompiler() })
