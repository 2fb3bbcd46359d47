package authn

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// The conformance table below is k8s.io/apiserver's own JWT authenticator test, TestToken in
// plugin/pkg/authenticator/token/oidc/oidc_test.go, translated case by case into clustertrust's terms:
// each row keeps the upstream case name verbatim, its options as a Config, its signing key and
// claims, and upstream's expected answer. Every row runs through a Router twice, once with the entry
// as NewEntry builds it (on the fast path when fastPathEligible holds) and once forced onto the
// general path, and both must give upstream's answer — except in the rows marked stricter, where
// clustertrust deliberately refuses what kube-apiserver accepts, or refuses before it reaches the
// check the upstream case is about. A refusal must also give upstream's reason: reasonOf of our error
// must equal reasonOf of upstream's error text, or the row's reason where that text cannot say it (see
// conformanceCase.reason). Upstream cases an OpenIDConnect object cannot express are listed in
// conformanceNotApplicable with the reason. A test parses the upstream file and fails when a case
// name is missing from both lists or named twice, so the table is revisited whenever go.mod moves
// k8s.io/apiserver.

// conformanceUpstreamVersion is the k8s.io/apiserver version the table was translated from.
const conformanceUpstreamVersion = "v0.37.2"

// Upstream pins its clock; clustertrust's paths use the real one. Every time claim is therefore
// re-based: a claim at upstream time T is written as realNow + (T - conformanceUpstreamNow), which keeps
// each case's timing decision (valid, expired, not yet valid) while the wall clock moves.
var (
	conformanceUpstreamNow     = time.Date(2009, time.November, 10, 23, 0, 0, 0, time.UTC)
	conformanceUpstreamValid   = conformanceUpstreamNow.Add(time.Hour)
	conformanceUpstreamExpired = conformanceUpstreamNow.Add(-time.Hour)
)

// refused is the answer of a row whose token clustertrust must refuse.
var refused *user.DefaultInfo

// conformanceCase is one upstream TestToken case.
type conformanceCase struct {
	name string // the upstream case name, verbatim
	// cfg is the case's JWTAuthenticator as a Config. Left zero: Issuer is https://auth.example.com,
	// Audiences my-client, UsernameClaim "username" (unless a CEL username is set) and SigningAlgs RS256,
	// upstream's default when SupportedSigningAlgs is unset. Prefixes are effective ("" is no prefix),
	// ServiceAccountGroups is always false. "{{.URL}}" stands for the case's own HTTPS server, as upstream.
	cfg Config
	// sign is the signing key and algorithm ("rsa1:RS256" when empty); pub lists the published keys,
	// comma-separated (the signing key when empty). The keys are generated per run: clustertrust needs
	// none of the upstream test keys' bytes, only which key signs and which are trusted.
	sign, pub string
	// openIDConfig, when set, is served as the discovery document and the keys are fetched from the
	// case's server (upstream's fetchKeysFromRemote) instead of being a static JWKS.
	openIDConfig string
	claims       string // the token's payload, signed as is

	want     *user.DefaultInfo // upstream's user; nil when upstream refuses the token
	wantErr  string            // upstream's error, verbatim: our refusal must have its reasonOf
	wantSkip bool              // upstream leaves the token to other authenticators: a refusal here
	// stricter says why clustertrust deliberately departs from upstream — it refuses what upstream
	// accepts, or it refuses before reaching the check the upstream case is about, so agreeing with
	// upstream's answer would prove nothing; ours is then its answer.
	stricter string
	ours     *user.DefaultInfo
	// reason is the reason (reasonOf) our refusal must carry where upstream's text cannot say it: a
	// stricter row, a skipped token, or an upstream text reasonOf does not know (ReasonInternal, with a
	// comment on the row saying why). Any other refusal must carry reasonOf(errors.New(wantErr)).
	reason string
}

// conformanceNA is an upstream case that does not apply to clustertrust.
type conformanceNA struct{ name, reason string }

// conformanceCases returns the table with its time claims re-based on now.
func conformanceCases(now time.Time) []conformanceCase {
	at := func(upstream time.Time) int64 { return now.Unix() + upstream.Unix() - conformanceUpstreamNow.Unix() }
	valid, expired := at(conformanceUpstreamValid), at(conformanceUpstreamExpired)
	const distributed = "stricter: clustertrust never fetches distributed claims (a token must not make the webhook issue requests), so the token is refused"
	// distributedUnfetched marks the rows where upstream fetches the claim and refuses what it gets: the
	// token is groups-distributed's, which clustertrust refuses before any fetch, so it never reaches the
	// check the case is about and its agreement with upstream's refusal would be vacuous.
	const distributedUnfetched = "stricter: upstream refuses what the distributed claim endpoint returns; clustertrust refuses the token before any fetch, so the case's check is never reached"

	turtle := fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "exp": %d, "turtle": {"foo": {"1": "a", "2": "b", "other1": {"bit1": true, "bit2": false, "bit3": 1}, "bar": {"3": "c", "4": "d", "other1": {"bit1": true, "bit2": false, "bit3": 1}, "baz": {"5": "e", "6": "f", "panda": ["snorlax", "007", "santa", "claus"], "other1": {"bit1": true, "bit2": false, "bit3": 1}}}}}}`, valid)
	turtleCfg := func(groups string) Config {
		return Config{
			ClaimValidationRules: []apiserver.ClaimValidationRule{{Expression: "claims.turtle.foo.other1.bit1 && !claims.turtle.foo.bar.other1.bit2"}},
			ClaimMappings: apiserver.ClaimMappings{
				Username: celExpr("claims.turtle.foo.bar.baz.panda[0]"), UID: celUID("claims.turtle.foo.bar.baz.panda[1]"), Groups: celExpr(groups),
				Extra: []apiserver.ExtraMapping{
					{Key: "bio.snorlax.org/1", ValueExpression: "string(claims.turtle.foo.bar.other1.bit2)"},
					{Key: "bio.snorlax.org/2", ValueExpression: "string(claims.turtle.foo.bar.baz.other1.bit3)"},
					{Key: "bio.snorlax.org/3", ValueExpression: "[string(claims.turtle.foo.bar.baz.other1.bit1)] + ['a', 'b', 'c']"},
				},
			},
			UserValidationRules: []apiserver.UserValidationRule{
				{Expression: `user.username != "bad"`}, {Expression: `user.uid == "007"`}, {Expression: `"claus" in user.groups`},
				{Expression: `user.extra.bio__dot__snorlax__dot__org__slash__3.size() == 4`},
			},
		}
	}
	turtleExtra := map[string][]string{"bio.snorlax.org/1": {"false"}, "bio.snorlax.org/2": {"1"}, "bio.snorlax.org/3": {"true", "a", "b", "c"}}
	celUsernameGroupsUID := apiserver.ClaimMappings{Username: celExpr("claims.username"), Groups: celExpr("claims.groups"), UID: celUID("claims.uid")}
	fooBarExtra := []apiserver.ExtraMapping{{Key: "example.org/foo", ValueExpression: "claims.foo"}, {Key: "example.org/bar", ValueExpression: "claims.bar"}}
	withExtra := func(m apiserver.ClaimMappings, extra ...apiserver.ExtraMapping) apiserver.ClaimMappings {
		m.Extra = extra
		return m
	}
	emptyUserRules := func(username, message string) []apiserver.UserValidationRule {
		return []apiserver.UserValidationRule{
			{Expression: `user.username == "` + username + `"`, Message: message},
			{Expression: `user.uid == ""`, Message: "uid must be empty string"},
			{Expression: `!('bar' in user.groups)`, Message: "groups must not contain bar"},
			{Expression: `!('bar' in user.extra)`, Message: "extra must not contain bar"},
		}
	}
	discovered := func(issuer string) string {
		return fmt.Sprintf(`{"issuer": %q, "jwks_uri": "{{.URL}}/.testing/keys"}`, issuer)
	}

	return []conformanceCase{
		// Flat username and groups claims.
		{name: "token", cfg: Config{},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "no-username", cfg: Config{UsernamePrefix: "prefix:"},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "exp": %d}`, valid),
			wantErr: `oidc: parse username claims "username": claim not present`},
		{name: "email", cfg: Config{UsernameClaim: "email"},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "email": "jane@example.com", "email_verified": true, "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane@example.com"}},
		{name: "email-not-verified", cfg: Config{UsernameClaim: "email"},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "email": "jane@example.com", "email_verified": false, "exp": %d}`, valid),
			wantErr: "oidc: email not verified"},
		{name: "no-email-verified-claim", cfg: Config{UsernameClaim: "email"},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "email": "jane@example.com", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane@example.com"}},
		{name: "invalid-email-verified-claim", cfg: Config{UsernameClaim: "email"},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "email": "jane@example.com", "email_verified": "false", "exp": %d}`, valid),
			wantErr: "oidc: parse 'email_verified' claim: json: cannot unmarshal string into Go value of type bool"},
		{name: "groups", cfg: Config{GroupsClaim: "groups"},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": ["team1", "team2"], "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Groups: []string{"team1", "team2"}}},

		// Distributed and aggregated claims. The case's server fails the row if anything fetches from it.
		{name: "groups-distributed", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "groups"},
			claims:   fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/groups", "access_token": "groups_token"}}, "exp": %d}`, valid),
			want:     &user.DefaultInfo{Name: "jane", Groups: []string{"team1", "team2"}},
			stricter: distributed, ours: refused, reason: ReasonDistributedClaims},
		// Upstream swaps in a client whose transport fails; clustertrust's always does. The token is the one
		// upstream accepts in groups-distributed, so agreeing here tests nothing of upstream's.
		{name: "groups-distributed invalid client", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "groups"},
			claims:   fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/groups", "access_token": "groups_token"}}, "exp": %d}`, valid),
			wantErr:  `oidc: could not expand distributed claims: while getting distributed claim "groups": Get "{{.URL}}/groups": some unexpected oidc error`,
			stricter: distributedUnfetched, ours: refused, reason: ReasonDistributedClaims},
		{name: "groups-distributed-malformed-claim-names", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "groups"},
			claims:  fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "nonexistent-claim-source"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/groups", "access_token": "groups_token"}}, "exp": %d}`, valid),
			wantErr: "oidc: verify token: oidc: source does not exist"},
		{name: "groups-distributed-malformed-names-and-sources", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "groups"},
			claims:  fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "src1"}, "exp": %d}`, valid),
			wantErr: "oidc: verify token: oidc: source does not exist"},
		// Upstream's endpoint answers a token without the promised claim; clustertrust never asks.
		{name: "groups-distributed-malformed-distributed-claim", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "groups"},
			claims:   fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/groups", "access_token": "groups_token"}}, "exp": %d}`, valid),
			wantErr:  `oidc: could not expand distributed claims: jwt returned by distributed claim endpoint "{{.URL}}/groups" did not contain claim: groups`,
			stricter: distributedUnfetched, ours: refused, reason: ReasonDistributedClaims},
		{name: "groups-distributed-unusual-name", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "rabbits"},
			claims:   fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"rabbits": "src1"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/rabbits", "access_token": "rabbits_token"}}, "exp": %d}`, valid),
			want:     &user.DefaultInfo{Name: "jane", Groups: []string{"team1", "team2"}},
			stricter: distributed, ours: refused, reason: ReasonDistributedClaims},
		// Upstream's endpoint answers a token for another audience; clustertrust never asks.
		{name: "groups-distributed-wrong-audience", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "groups"},
			claims:   fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/groups", "access_token": "groups_token"}}, "exp": %d}`, valid),
			wantErr:  `oidc: could not expand distributed claims: verify distributed claim token: oidc: expected audience "my-client" got ["your-client"]`,
			stricter: distributedUnfetched, ours: refused, reason: ReasonDistributedClaims},
		// Upstream's endpoint answers an expired token; clustertrust never asks.
		{name: "groups-distributed-expired-token", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "groups"},
			claims:   fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/groups", "access_token": "groups_token"}}, "exp": %d}`, valid),
			wantErr:  "oidc: could not expand distributed claims: verify distributed claim token: oidc: token is expired (Token Expiry: {{.Expired}})",
			stricter: distributedUnfetched, ours: refused, reason: ReasonDistributedClaims},
		// The normal claim wins, so nothing is fetched.
		{name: "groups-distributed-normal-claim-wins", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "groups"},
			claims: fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "groups": "team1", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/groups", "access_token": "groups_token"}}, "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Groups: []string{"team1"}}},
		{name: "group-string-claim", cfg: Config{GroupsClaim: "groups"},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": "team1", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Groups: []string{"team1"}}},
		{name: "group-string-claim-distributed", cfg: Config{Issuer: "{{.URL}}", GroupsClaim: "groups"},
			claims:   fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/groups", "access_token": "groups_token"}}, "exp": %d}`, valid),
			want:     &user.DefaultInfo{Name: "jane", Groups: []string{"team1"}},
			stricter: distributed, ours: refused, reason: ReasonDistributedClaims},
		// An aggregated claim (a source without an endpoint) is ignored: nothing to fetch.
		{name: "group-string-claim-aggregated-not-supported", cfg: Config{GroupsClaim: "groups"},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"JWT": "some.jwt.token"}}, "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "no-groups-claim", cfg: Config{GroupsClaim: "groups"},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "invalid-groups-claim", cfg: Config{GroupsClaim: "groups"},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": 42, "exp": %d}`, valid),
			wantErr: `oidc: parse groups claim "groups": json: cannot unmarshal number into Go value of type string`},

		// Required claims (claim validation rules with a required value).
		{name: "required-claim", cfg: Config{GroupsClaim: "groups", ClaimValidationRules: []apiserver.ClaimValidationRule{{Claim: "hd", RequiredValue: "example.com"}, {Claim: "sub", RequiredValue: "test"}}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "hd": "example.com", "sub": "test", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "no-required-claim", cfg: Config{GroupsClaim: "groups", ClaimValidationRules: []apiserver.ClaimValidationRule{{Claim: "hd", RequiredValue: "example.com"}}},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			wantErr: "oidc: required claim hd not present in ID token"},
		{name: "invalid-required-claim", cfg: Config{GroupsClaim: "groups", ClaimValidationRules: []apiserver.ClaimValidationRule{{Claim: "hd", RequiredValue: "example.com"}}},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "hd": "example.org", "exp": %d}`, valid),
			wantErr: "oidc: required claim hd value does not match. Got = example.org, want = example.com"},

		// Signature, expiry, audience and issuer.
		// Upstream's text comes from its test's static key set, not from a library clustertrust runs, so
		// reasonOf does not know it; it says the token's kid is not among the keys.
		{name: "invalid-signature", cfg: Config{UsernamePrefix: "prefix:"}, pub: "rsa2:RS256",
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			wantErr: "oidc: verify token: failed to verify signature: no keys matches jwk keyid", reason: ReasonUnknownKID},
		{name: "expired", cfg: Config{UsernamePrefix: "prefix:"},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, expired),
			wantErr: `oidc: verify token: oidc: token is expired (Token Expiry: {{.Expired}})`},
		{name: "invalid-aud", cfg: Config{UsernamePrefix: "prefix:"},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "not-my-client", "username": "jane", "exp": %d}`, valid),
			wantErr: `oidc: verify token: oidc: expected audience "my-client" got ["not-my-client"]`},
		{name: "multiple-audiences", cfg: Config{},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": ["not-my-client", "my-client"], "azp": "not-my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "multiple-audiences in authentication config", cfg: Config{Audiences: []string{"random-client", "my-client"}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": ["not-my-client", "my-client"], "azp": "not-my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "multiple-audiences in authentication config, multiple matches", cfg: Config{Audiences: []string{"random-client", "my-client", "other-client"}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": ["not-my-client", "my-client", "other-client"], "azp": "not-my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "multiple-audiences in authentication config, no match", cfg: Config{Audiences: []string{"random-client", "my-client"}},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": ["not-my-client"], "azp": "not-my-client", "username": "jane", "exp": %d}`, valid),
			wantErr: `oidc: verify token: oidc: expected audience in ["my-client" "random-client"] got ["not-my-client"]`},
		{name: "nuanced audience validation using claim validation rules", cfg: Config{Audiences: []string{"bar", "foo", "baz"},
			ClaimValidationRules: []apiserver.ClaimValidationRule{{Expression: `sets.equivalent(claims.aud, ["bar", "foo", "baz"])`, Message: "audience must exactly contain [bar, foo, baz]"}}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": ["foo", "bar", "baz"], "azp": "not-my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "audience validation using claim validation rules fails", cfg: Config{Audiences: []string{"bar", "foo", "baz"},
			ClaimValidationRules: []apiserver.ClaimValidationRule{{Expression: `sets.equivalent(claims.aud, ["bar", "foo", "baz"])`, Message: "audience must exactly contain [bar, foo, baz]"}}},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": ["foo", "baz"], "azp": "not-my-client", "username": "jane", "exp": %d}`, valid),
			wantErr: `oidc: error evaluating claim validation expression: validation expression 'sets.equivalent(claims.aud, ["bar", "foo", "baz"])' failed: audience must exactly contain [bar, foo, baz]`},
		// Upstream skips a token of another issuer; the router refuses it as an unknown issuer. (The iss is
		// readable: a token whose iss cannot be read would be declined too, and refused as malformed.)
		{name: "invalid-issuer", cfg: Config{UsernamePrefix: "prefix:"},
			claims:   fmt.Sprintf(`{"iss": "https://example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			wantSkip: true, reason: ReasonUnknownIssuer},

		// Prefixes.
		{name: "username-prefix", cfg: Config{UsernamePrefix: "oidc:"},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "oidc:jane"}},
		{name: "groups-prefix", cfg: Config{UsernamePrefix: "oidc:", GroupsClaim: "groups", GroupsPrefix: "groups:"},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": ["team1", "team2"], "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "oidc:jane", Groups: []string{"groups:team1", "groups:team2"}}},
		{name: "groups-prefix-distributed", cfg: Config{Issuer: "{{.URL}}", UsernamePrefix: "oidc:", GroupsClaim: "groups", GroupsPrefix: "groups:"},
			claims:   fmt.Sprintf(`{"iss": "{{.URL}}", "aud": "my-client", "username": "jane", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "{{.URL}}/groups", "access_token": "groups_token"}}, "exp": %d}`, valid),
			want:     &user.DefaultInfo{Name: "oidc:jane", Groups: []string{"groups:team1", "groups:team2"}},
			stricter: distributed, ours: refused, reason: ReasonDistributedClaims},

		// Signing algorithms.
		{name: "invalid-signing-alg", cfg: Config{UsernamePrefix: "prefix:"}, sign: "rsa1:PS256", pub: "rsa1:RS256",
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			wantErr: `oidc: verify token: oidc: id token signed with unsupported algorithm, expected ["RS256"] got "PS256"`},
		{name: "ps256", cfg: Config{SigningAlgs: []string{"PS256"}}, sign: "rsa1:PS256",
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "es512", cfg: Config{SigningAlgs: []string{"ES512"}}, sign: "ec2:ES512", pub: "ec1:ES512,ec2:ES512",
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},

		// Google's legacy issuer alias: kube-apiserver routes "accounts.google.com" to https://accounts.google.com.
		{name: "accounts.google.com issuer", cfg: Config{Issuer: "https://accounts.google.com", UsernameClaim: "email"},
			claims: fmt.Sprintf(`{"iss": "accounts.google.com", "email": "thomas.jefferson@gmail.com", "aud": "my-client", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "thomas.jefferson@gmail.com"}},
		{name: "good token with bad client id", cfg: Config{UsernamePrefix: "prefix:"},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-wrong-client", "username": "jane", "exp": %d}`, valid),
			wantErr: `oidc: verify token: oidc: expected audience "my-client" got ["my-wrong-client"]`},

		// CEL claim validation rules.
		{name: "claim validation rule with expression fails", cfg: Config{ClaimValidationRules: []apiserver.ClaimValidationRule{{Expression: `claims.hd == "example.com"`, Message: "hd claim must be example.com"}}},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			wantErr: `oidc: error evaluating claim validation expression: expression 'claims.hd == "example.com"' resulted in error: no such key: hd`},
		{name: "claim validation rule with expression", cfg: Config{ClaimValidationRules: []apiserver.ClaimValidationRule{{Expression: `claims.hd == "example.com"`, Message: "hd claim must be example.com"}}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "hd": "example.com"}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "claim validation rule with expression and nested claims", cfg: Config{ClaimValidationRules: []apiserver.ClaimValidationRule{{Expression: `claims.foo.bar == "baz"`, Message: "foo.bar claim must be baz"}}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "hd": "example.com", "foo": {"bar": "baz"}}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "claim validation rule with mix of expression and claim", cfg: Config{ClaimValidationRules: []apiserver.ClaimValidationRule{{Expression: `claims.foo.bar == "baz"`, Message: "foo.bar claim must be baz"}, {Claim: "hd", RequiredValue: "example.com"}}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "hd": "example.com", "foo": {"bar": "baz"}}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},

		// CEL claim mappings.
		{name: "username claim mapping with expression", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username")}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "username claim mapping with expression and nested claim", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.foo.username")}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "foo": {"username": "jane"}}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "claim mappings with expressions and deeply nested claim - success", cfg: turtleCfg("claims.turtle.foo.bar.baz.panda"),
			claims: turtle,
			want:   &user.DefaultInfo{Name: "snorlax", UID: "007", Groups: []string{"snorlax", "007", "santa", "claus"}, Extra: turtleExtra}},
		{name: "claim mappings with expressions and deeply nested claim - success via optional", cfg: turtleCfg("claims.turtle.foo.bar.baz.?a.b.c.d.orValue([ 'claus' ])"),
			claims: turtle,
			want:   &user.DefaultInfo{Name: "snorlax", UID: "007", Groups: []string{"claus"}, Extra: turtleExtra}},
		{name: "claim mappings with expressions and deeply nested claim - failure without optional", cfg: turtleCfg("claims.turtle.foo.bar.baz.a.b.c.d"),
			claims:  turtle,
			wantErr: "oidc: error evaluating group claim expression: expression 'claims.turtle.foo.bar.baz.a.b.c.d' resulted in error: no such key: a"},
		// A ServiceAccount token payload mapped with CEL; iat (a literal upstream) is re-based like every time claim.
		{name: "claim mappings with expressions and deeply nested claim - success - service account payload",
			cfg: Config{ // an OpenIDConnect object needs allowDefaultAudiences for this audience
				Issuer: "https://kubernetes.default.svc", Audiences: []string{"https://kubernetes.default.svc"},
				ClaimValidationRules: []apiserver.ClaimValidationRule{
					{Expression: `claims.sub == ("system:serviceaccount:" + claims.kubernetes__dot__io.namespace + ":" + claims.kubernetes__dot__io.serviceaccount.name)`},
					{Expression: `has(claims.kubernetes__dot__io.pod.uid)`},
					{Expression: `claims["kubernetes.io"]["node"]["uid"] != ""`},
					{Expression: `claims[?"kubernetes.io"]["node"]["ip"].orValue(true)`},
				},
				ClaimMappings: apiserver.ClaimMappings{
					Username: celExpr(`"system:serviceaccount:" + claims.kubernetes__dot__io.namespace + ":" + claims.kubernetes__dot__io.serviceaccount.name`),
					UID:      celUID("claims.kubernetes__dot__io.serviceaccount.uid"),
					Groups:   celExpr(`[ "system:serviceaccounts", "system:serviceaccounts:" + claims.kubernetes__dot__io.namespace ]`),
					Extra: []apiserver.ExtraMapping{
						{Key: "authentication.x-kubernetes.io/pod-name", ValueExpression: "claims.kubernetes__dot__io.pod.name"},
						{Key: "authentication.x-kubernetes.io/pod-uid", ValueExpression: "claims.kubernetes__dot__io.pod.uid"},
						{Key: "authentication.x-kubernetes.io/node-name", ValueExpression: "claims.kubernetes__dot__io.node.name"},
						{Key: "authentication.x-kubernetes.io/node-uid", ValueExpression: "claims.kubernetes__dot__io.node.uid"},
						{Key: "authentication.x-kubernetes.io/credential-id", ValueExpression: `"JTI=" + claims.jti`},
						{Key: "test.x-kubernetes.io/warnafter", ValueExpression: "string(int(claims.kubernetes__dot__io.warnafter))"},
						{Key: "test.x-kubernetes.io/namespace", ValueExpression: "claims.kubernetes__dot__io.namespace"},
					},
				},
				UserValidationRules: []apiserver.UserValidationRule{
					{Expression: `user.username.startsWith("system:serviceaccount:" + user.extra["test.x-kubernetes.io/namespace"][0] + ":")`},
					{Expression: `user.uid != ""`},
					{Expression: `"system:serviceaccounts" in user.groups && user.groups.size() == 2`},
					{Expression: `user.extra.authentication__dot__x__dash__kubernetes__dot__io__slash__node__dash__name[0] == "127.0.0.1"`},
					{Expression: `user.extra.authentication__dot__x__dash__kubernetes__dot__io__slash__credential__dash__id[0] == user.extra.authentication__dot__kubernetes__dot__io__slash__credential__dash__id[0]`},
					{Expression: `user.extra["test.x-kubernetes.io/warnafter"][0] == "1700081020"`},
					{Expression: `has(user.extra.authentication__dot__x__dash__kubernetes__dot__io__slash__pod__dash__name)`},
					{Expression: `user.extra[?"test.x-kubernetes.io/missing"].orValue([]) == []`},
				},
			},
			claims: fmt.Sprintf(`{"aud": ["https://kubernetes.default.svc"], "exp": %d, "iat": %d, "iss": "https://kubernetes.default.svc", "jti": "ea28ed49-2e11-4280-9ec5-bc3d1d84661a", "kubernetes.io": {"namespace": "kube-system", "node": {"name": "127.0.0.1", "uid": "58456cb0-dd00-45ed-b797-5578fdceaced"}, "pod": {"name": "coredns-69cbfb9798-jv9gn", "uid": "778a530c-b3f4-47c0-9cd5-ab018fb64f33"}, "serviceaccount": {"name": "coredns", "uid": "a087d5a0-e1dd-43ec-93ac-f13d89cd13af"}, "warnafter": 1700081020}, "nbf": %d, "sub": "system:serviceaccount:kube-system:coredns"}`,
				valid, at(time.Unix(1700077413, 0)), at(conformanceUpstreamNow)),
			want: &user.DefaultInfo{
				Name: "system:serviceaccount:kube-system:coredns", UID: "a087d5a0-e1dd-43ec-93ac-f13d89cd13af",
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"},
				Extra: map[string][]string{
					"authentication.x-kubernetes.io/pod-name":      {"coredns-69cbfb9798-jv9gn"},
					"authentication.x-kubernetes.io/pod-uid":       {"778a530c-b3f4-47c0-9cd5-ab018fb64f33"},
					"authentication.x-kubernetes.io/node-name":     {"127.0.0.1"},
					"authentication.x-kubernetes.io/node-uid":      {"58456cb0-dd00-45ed-b797-5578fdceaced"},
					"authentication.kubernetes.io/credential-id":   {"JTI=ea28ed49-2e11-4280-9ec5-bc3d1d84661a"},
					"authentication.x-kubernetes.io/credential-id": {"JTI=ea28ed49-2e11-4280-9ec5-bc3d1d84661a"},
					"test.x-kubernetes.io/warnafter":               {"1700081020"},
					"test.x-kubernetes.io/namespace":               {"kube-system"},
				},
			},
			stricter: "stricter: an upstream must never speak for a downstream system: identity, so a system: username is refused (and system: groups would be dropped)",
			ours:     refused, reason: ReasonSystemIdentity},
		{name: "claim mappings with expressions and deeply nested claim - success - claims payload with deep use of __dot__",
			cfg: Config{
				ClaimValidationRules: []apiserver.ClaimValidationRule{
					{Expression: `has(claims.turtle.foo.bar.baz.username__dot__io)`},
					{Expression: `has(claims.turtle.foo.bar.baz.link[0].uid__dot__io)`},
					{Expression: `has(claims.data[0].groups__dot__io)`},
					{Expression: `claims.turtle.foo.bar.bee.username__dot__io.company__dot__io == "fun-corp"`},
				},
				ClaimMappings: apiserver.ClaimMappings{
					Username: celExpr(`claims.turtle.foo.bar.baz.username__dot__io`),
					UID:      celUID(`claims.turtle.foo.bar.baz.link[0].uid__dot__io`),
					Groups:   celExpr(`claims.data[0].groups__dot__io`),
				},
			},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "exp": %d, "data": [{"groups.io": "gen1"}], "turtle": {"foo": {"1": "a", "2": "b", "other1": {"bit1": true, "bit2": false, "bit3": 1}, "bar": {"3": "c", "4": "d", "other1": {"bit1": true, "bit2": false, "bit3": 1}, "bee": {"username.io": {"company.io": "fun-corp"}}, "baz": {"5": "e", "6": "f", "panda": ["snorlax", "007", "santa", "claus"], "other1": {"bit1": true, "bit2": false, "bit3": 1}, "username.io": "snorlax.io", "link": [{"uid.io": "143"}]}}}}}`, valid),
			want:   &user.DefaultInfo{Name: "snorlax.io", UID: "143", Groups: []string{"gen1"}}},
		{name: "groups claim mapping with expression", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username"), Groups: celExpr("claims.groups")}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": ["team1", "team2"], "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Groups: []string{"team1", "team2"}}},
		{name: "groups claim with expression", cfg: Config{UsernamePrefix: "oidc:", ClaimMappings: apiserver.ClaimMappings{Groups: celExpr(`(claims.roles.split(",") + claims.other_roles.split(",")).map(role, "groups:" + role)`)}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "roles": "foo,bar", "other_roles": "baz,qux", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "oidc:jane", Groups: []string{"groups:foo", "groups:bar", "groups:baz", "groups:qux"}}},
		{name: "uid claim mapping with expression", cfg: Config{ClaimMappings: celUsernameGroupsUID},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": ["team1", "team2"], "exp": %d, "uid": "1234"}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Groups: []string{"team1", "team2"}, UID: "1234"}},
		{name: "extra claim mapping with expression", cfg: Config{ClaimMappings: withExtra(celUsernameGroupsUID, fooBarExtra...)},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": ["team1", "team2"], "exp": %d, "uid": "1234", "foo": "bar", "bar": ["baz", "qux"]}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Groups: []string{"team1", "team2"}, UID: "1234", Extra: map[string][]string{"example.org/foo": {"bar"}, "example.org/bar": {"baz", "qux"}}}},
		{name: "extra claim mapping, value derived from claim value", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username"), Extra: []apiserver.ExtraMapping{
			{Key: "example.org/admin", ValueExpression: `(has(claims.is_admin) && claims.is_admin) ? "true":""`},
			{Key: "example.org/admin_1", ValueExpression: `claims.?is_admin.orValue(false) == true ? "true":""`},
			{Key: "example.org/non_existent", ValueExpression: `claims.?non_existent.orValue("default") == "default" ? "true":""`},
		}}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "is_admin": true}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Extra: map[string][]string{"example.org/admin": {"true"}, "example.org/admin_1": {"true"}, "example.org/non_existent": {"true"}}}},
		{name: "hardcoded extra claim mapping", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username"), Extra: []apiserver.ExtraMapping{{Key: "example.org/admin", ValueExpression: `"true"`}}}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "is_admin": true}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Extra: map[string][]string{"example.org/admin": {"true"}}}},
		{name: "extra claim mapping, empty string value for key", cfg: Config{ClaimMappings: withExtra(celUsernameGroupsUID, fooBarExtra...)},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": ["team1", "team2"], "exp": %d, "uid": "1234", "foo": "", "bar": ["baz", "qux"]}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Groups: []string{"team1", "team2"}, UID: "1234", Extra: map[string][]string{"example.org/bar": {"baz", "qux"}}}},
		{name: "extra claim mapping with user validation rule succeeds", cfg: Config{
			ClaimMappings: withExtra(celUsernameGroupsUID, apiserver.ExtraMapping{Key: "example.org/foo", ValueExpression: "'bar'"}, apiserver.ExtraMapping{Key: "example.org/baz", ValueExpression: "claims.baz"}),
			UserValidationRules: []apiserver.UserValidationRule{{
				Expression: "'bar' in user.extra['example.org/foo'] && 'qux' in user.extra['example.org/baz']",
				Message:    "example.org/foo must be bar and example.org/baz must be qux",
			}}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": ["team1", "team2"], "exp": %d, "uid": "1234", "baz": "qux"}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Groups: []string{"team1", "team2"}, UID: "1234", Extra: map[string][]string{"example.org/foo": {"bar"}, "example.org/baz": {"qux"}}}},
		{name: "groups expression returns null", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username"), Groups: celExpr("claims.groups")}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "groups": null, "exp": %d, "uid": "1234", "baz": "qux"}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "test user validation rule doesn't fail when user info is empty except username",
			cfg:      Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username"), Groups: celExpr("claims.groups")}, UserValidationRules: emptyUserRules(" ", "username must be single space")},
			claims:   fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": " ", "groups": null, "exp": %d, "baz": "qux"}`, valid),
			want:     &user.DefaultInfo{Name: " "},
			stricter: "stricter: a blank username is refused like an empty one, under every mapping; kube-apiserver refuses only an empty one, and only from a CEL expression",
			ours:     refused, reason: ReasonEmptyUsername},
		{name: "empty username is allowed via claim",
			cfg:      Config{ClaimMappings: apiserver.ClaimMappings{Groups: celExpr("claims.groups")}, UserValidationRules: emptyUserRules("", "username must be empty string")},
			claims:   fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "", "groups": null, "exp": %d, "baz": "qux"}`, valid),
			want:     &user.DefaultInfo{},
			stricter: "stricter: an empty username is refused under every mapping; kube-apiserver refuses it only from a CEL expression",
			ours:     refused, reason: ReasonEmptyUsername},
		{name: "minimum valid jwt payload", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.user")}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "user": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},

		// Discovery: the keys are fetched through the case's discovery URL, trusting its server's CA.
		{name: "discovery-url", cfg: Config{DiscoveryURL: "{{.URL}}/.well-known/openid-configuration"},
			openIDConfig: discovered("https://auth.example.com"),
			claims:       fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:         &user.DefaultInfo{Name: "jane"}},
		{name: "discovery url, issuer has a path", cfg: Config{Issuer: "https://auth.example.com/a/b/foo", DiscoveryURL: "{{.URL}}/.well-known/openid-configuration"},
			openIDConfig: discovered("https://auth.example.com/a/b/foo"),
			claims:       fmt.Sprintf(`{"iss": "https://auth.example.com/a/b/foo", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:         &user.DefaultInfo{Name: "jane"}},
		{name: "discovery url has a path, issuer url has no path", cfg: Config{DiscoveryURL: "{{.URL}}/c/d/bar/.well-known/openid-configuration"},
			openIDConfig: discovered("https://auth.example.com"),
			claims:       fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:         &user.DefaultInfo{Name: "jane"}},
		{name: "discovery url and issuer url have paths", cfg: Config{Issuer: "https://auth.example.com/a/b/foo", DiscoveryURL: "{{.URL}}/c/d/bar/.well-known/openid-configuration"},
			openIDConfig: discovered("https://auth.example.com/a/b/foo"),
			claims:       fmt.Sprintf(`{"iss": "https://auth.example.com/a/b/foo", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:         &user.DefaultInfo{Name: "jane"}},
		{name: "discovery url and issuer url have paths, issuer url has trailing slash", cfg: Config{Issuer: "https://auth.example.com/a/b/foo/", DiscoveryURL: "{{.URL}}/c/d/bar/.well-known/openid-configuration"},
			openIDConfig: discovered("https://auth.example.com/a/b/foo/"),
			claims:       fmt.Sprintf(`{"iss": "https://auth.example.com/a/b/foo/", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:         &user.DefaultInfo{Name: "jane"}},

		// Credential id (jti).
		{name: "credential id set in extra even when no extra claim mappings are defined", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username")}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "jti": "1234"}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Extra: map[string][]string{user.CredentialIDKey: {"JTI=1234"}}}},
		{name: "credential id set in extra when extra claim mappings are defined", cfg: Config{ClaimMappings: withExtra(apiserver.ClaimMappings{Username: celExpr("claims.username")}, fooBarExtra...)},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "jti": "1234", "foo": "bar", "bar": ["baz", "qux"]}`, valid),
			want:   &user.DefaultInfo{Name: "jane", Extra: map[string][]string{user.CredentialIDKey: {"JTI=1234"}, "example.org/foo": {"bar"}, "example.org/bar": {"baz", "qux"}}}},
		{name: "non-string jti claim does not set credential id in extra or error", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username")}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "jti": 1234}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "missing jti claim does not set credential id in extra or error", cfg: Config{ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username")}},
			claims: fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d}`, valid),
			want:   &user.DefaultInfo{Name: "jane"}},
		{name: "using credential id and user validation rule to simulate revocation", cfg: Config{
			ClaimMappings: apiserver.ClaimMappings{Username: celExpr("claims.username")},
			UserValidationRules: []apiserver.UserValidationRule{{
				Expression: `!(user.extra[?'authentication.kubernetes.io/credential-id'][0].orValue('') in ["JTI=ea28ed49-2e11-4280-9ec5-bc3d1d84661a"])`,
				Message:    "credential is revoked",
			}}},
			claims:  fmt.Sprintf(`{"iss": "https://auth.example.com", "aud": "my-client", "username": "jane", "exp": %d, "jti": "ea28ed49-2e11-4280-9ec5-bc3d1d84661a"}`, valid),
			wantErr: `oidc: error evaluating user info validation rule: validation expression '!(user.extra[?'authentication.kubernetes.io/credential-id'][0].orValue('') in ["JTI=ea28ed49-2e11-4280-9ec5-bc3d1d84661a"])' failed: credential is revoked`},
	}
}

// conformanceNotApplicable are the upstream cases an OpenIDConnect object cannot express.
var conformanceNotApplicable = []conformanceNA{
	{"not-https", "An http issuer is refused when the object is admitted (the CRD's issuerURL pattern and registry.ToConfig), before any token is seen."},
	{"no-username-claim", "usernameClaim defaults to sub and has a minimum length, so an object cannot lack a username claim and expression."},
	{"invalid-sig-alg", "HMAC is never accepted: supportedSigningAlgs is an enum of asymmetric algorithms and NewEntry refuses any other."},
	{"client and ca mutually exclusive", "Concerns the apiserver authenticator's Go options (Client vs CAContentProvider); an object only has caBundle."},
	{"keyset and discovery URL mutually exclusive", "Concerns the apiserver authenticator's Go options; the object's own rule (jwks and discoveryURL are mutually exclusive) is CRD validation."},
	{"health check failure", "Tests the authenticator's health check against an unresolvable host; clustertrust reports key health in status conditions, not per token."},
	{"user validation rule fails for user.username", "Needs usernamePrefix system:, which the CRD and registry.ToConfig refuse (a system: username is refused per token anyway)."},
	{"user validation rule fails for user.groups", "Needs groupsPrefix system:, which the CRD and registry.ToConfig refuse (system: groups are dropped per token anyway)."},
	{"uid claim mapping with claim", "claimMappings.uid is a CEL expression only; the same token with the expression form is the case \"uid claim mapping with expression\"."},
	{"extra claim mapping, multiple expressions for same key", "Init-time validation: claimMappings.extra is a list map keyed by key, so the API server refuses a duplicate key."},
	{"disallowed issuer via configured value", "DisallowedIssuers is a kube-apiserver option (its own service account issuers) with no OpenIDConnect counterpart."},
	{"invalid egress type", "Egress selectors are a kube-apiserver option; the webhook dials issuers directly."},
	{"valid egress type with error", "Egress selectors are a kube-apiserver option; the webhook dials issuers directly."},
	{"valid egress type with error - again", "Egress selectors are a kube-apiserver option; the webhook dials issuers directly."},
	{"valid egress type with no egress config", "Egress selectors are a kube-apiserver option; the webhook dials issuers directly."},
	{"valid egress type with no egress config for the given type", "Egress selectors are a kube-apiserver option; the webhook dials issuers directly."},
	{"valid egress type with broken dialer", "Egress selectors are a kube-apiserver option; the webhook dials issuers directly."},
	{"valid egress type with working dialer", "Egress selectors are a kube-apiserver option; discovery through a discovery URL is covered by the discovery-url rows."},
}

func TestConformanceKubeAPIServerToken(t *testing.T) {
	t.Parallel()
	cases := conformanceCases(time.Now())
	keys := newConformanceKeys(t)

	version := conformanceUpstreamVersion + " (table)"
	t.Run("upstream-complete", func(t *testing.T) {
		v, names := upstreamTestTokenCases(t)
		version = v
		checkConformanceComplete(t, names, cases, conformanceNotApplicable)
	})

	eligible, stricter := 0, 0
	for _, c := range cases {
		if fastPathEligible(c.config("https://placeholder.invalid")) {
			eligible++
		}
		if c.stricter != "" {
			stricter++
		}
	}
	t.Logf("k8s.io/apiserver %s TestToken: %d cases; %d run on both paths (%d fast-path-eligible), %d stricter, %d not applicable",
		version, len(cases)+len(conformanceNotApplicable), len(cases), eligible, stricter, len(conformanceNotApplicable))

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runConformanceCase(t, keys, c)
		})
	}
}

// runConformanceCase runs one row through a router with the entry as built and again forced onto the
// general path.
func runConformanceCase(t *testing.T, keys conformanceKeys, c conformanceCase) {
	want := c.want
	switch {
	case c.stricter != "":
		want = c.ours
	case c.want == nil && c.wantErr == "" && !c.wantSkip:
		t.Fatal("the row has no expectation: set want, wantErr or wantSkip")
	}
	wantReason := c.wantReason(t, want)
	if !json.Valid([]byte(c.claims)) {
		t.Fatalf("claims are not JSON: %s", c.claims)
	}

	// The case's own server, as upstream: it serves discovery and keys, and records any other request
	// (a distributed claim fetch), which clustertrust must never make.
	var url string
	var caBundle []byte
	var mu sync.Mutex
	var unexpected []string
	if strings.Contains(c.claims+c.cfg.Issuer+c.cfg.DiscoveryURL+c.openIDConfig, "{{.URL}}") {
		jwks := keys.jwks(t, c.pubKeys())
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path == "/.testing/keys" && c.openIDConfig != "":
				w.Header().Set("Content-Type", "application/jwk-set+json")
				_, _ = w.Write(jwks)
			case (r.URL.Path == "/.well-known/openid-configuration" || r.URL.Path == "/c/d/bar/.well-known/openid-configuration") && c.openIDConfig != "":
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(strings.ReplaceAll(c.openIDConfig, "{{.URL}}", url)))
			default:
				mu.Lock()
				unexpected = append(unexpected, r.URL.Path)
				mu.Unlock()
				http.NotFound(w, r)
			}
		}))
		t.Cleanup(srv.Close)
		url = srv.URL
		caBundle = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	}

	cfg := c.config(url)
	if c.openIDConfig != "" {
		cfg.CABundle = caBundle
	} else {
		cfg.StaticJWKS = keys.jwks(t, c.pubKeys())
	}
	tok := keys.sign(t, c.signKey(), strings.ReplaceAll(c.claims, "{{.URL}}", url))

	first := "default"
	if fastPathEligible(cfg) {
		first = "fast"
	}
	for _, path := range []string{first, "general"} {
		t.Run(path, func(t *testing.T) {
			e := startEntry(t, cfg)
			if err := e.KeyStatus().LastError; err != nil {
				t.Fatalf("keys did not load: %v", err)
			}
			if path == "general" {
				e.fast = false
			}
			r := NewRouter()
			r.Store("conformance", e)
			resp, _, err := r.AuthenticateToken(t.Context(), tok)
			checkConformanceAnswer(t, c, want, wantReason, resp, err)
		})
	}

	mu.Lock()
	defer mu.Unlock()
	if len(unexpected) > 0 {
		t.Errorf("clustertrust requested %q from the case's server: it must never fetch distributed claims", unexpected)
	}
}

// wantReason returns the reason the row's refusal must carry ("" when want accepts the token): the
// row's reason, or else reasonOf upstream's error text. It fails the row when that reason cannot be
// known, or when reason is set where it should not be: on an accepted token, or over a reason
// upstream's text does give on a row that is not stricter (a different reason is a stricter row).
func (c conformanceCase) wantReason(t *testing.T, want *user.DefaultInfo) string {
	t.Helper()
	upstream := ""
	if c.wantErr != "" {
		upstream = reasonOf(errors.New(c.wantErr))
	}
	switch {
	case want != nil:
		if c.reason != "" {
			t.Fatalf("reason %s is set on a row whose token is accepted", c.reason)
		}
		return ""
	case c.stricter != "" || c.wantSkip:
		if c.reason == "" {
			t.Fatal("a stricter or skipped row's refusal needs its reason: set reason")
		}
	case c.reason == "":
		if upstream == ReasonInternal {
			t.Fatalf("reasonOf does not know upstream's text %q: set reason, with a comment saying why", c.wantErr)
		}
		return upstream
	case upstream != ReasonInternal:
		t.Fatalf("reason %s is set where upstream's text %q gives %s: drop reason, or mark the row stricter if it differs on purpose", c.reason, c.wantErr, upstream)
	}
	if c.reason == ReasonInternal {
		t.Fatal("reason internal is never a refusal's expected reason")
	}
	return c.reason
}

// checkConformanceAnswer compares the router's answer with the row's: the user exactly, once the extras
// clustertrust adds itself (authentication.clustertrust.io/…) are removed; or a refusal for wantReason.
// Empty and nil groups or extra are equal, as they are in a TokenReview.
func checkConformanceAnswer(t *testing.T, c conformanceCase, want *user.DefaultInfo, wantReason string, resp *authenticator.Response, err error) {
	t.Helper()
	if want == nil {
		if err == nil && resp != nil {
			t.Errorf("accepted as %s, want a refusal for %s (%s)", describeUser(resp.User), wantReason, c.refusalReason())
			return
		}
		if got := reasonOf(err); got != wantReason {
			t.Errorf("refused for %s, want %s\nours:     %v\nupstream: %s", got, wantReason, err, c.refusalReason())
			return
		}
		t.Logf("refused for %s: %v; upstream: %s", wantReason, err, c.refusalReason())
		return
	}
	if err != nil || resp == nil {
		t.Errorf("refused (%v), want %s", err, describeUser(want))
		return
	}
	got := resp.User
	extra := maps.Clone(got.GetExtra())
	maps.DeleteFunc(extra, func(k string, _ []string) bool { return strings.HasPrefix(k, ExtraPrefix) })
	if got.GetName() != want.Name || got.GetUID() != want.UID || !slices.Equal(got.GetGroups(), want.Groups) ||
		!maps.EqualFunc(extra, want.Extra, slices.Equal[[]string]) {
		t.Errorf("user mismatch\ngot:  %s\nwant: %s", describeUser(&user.DefaultInfo{Name: got.GetName(), UID: got.GetUID(), Groups: got.GetGroups(), Extra: extra}), describeUser(want))
	}
}

// config returns the row's Config with the defaults filled in and {{.URL}} replaced.
func (c conformanceCase) config(url string) Config {
	cfg := c.cfg
	cfg.Name = "conformance"
	if cfg.Issuer == "" {
		cfg.Issuer = "https://auth.example.com"
	}
	if cfg.Audiences == nil {
		cfg.Audiences = []string{"my-client"}
	}
	if cfg.UsernameClaim == "" && cfg.ClaimMappings.Username.Expression == "" {
		cfg.UsernameClaim = "username"
	}
	if cfg.SigningAlgs == nil {
		cfg.SigningAlgs = []string{"RS256"}
	}
	cfg.ServiceAccountGroups = false
	cfg.Issuer = strings.ReplaceAll(cfg.Issuer, "{{.URL}}", url)
	cfg.DiscoveryURL = strings.ReplaceAll(cfg.DiscoveryURL, "{{.URL}}", url)
	return cfg
}

func (c conformanceCase) signKey() string {
	if c.sign == "" {
		return "rsa1:RS256"
	}
	return c.sign
}

func (c conformanceCase) pubKeys() string {
	if c.pub == "" {
		return c.signKey()
	}
	return c.pub
}

func (c conformanceCase) refusalReason() string {
	switch {
	case c.stricter != "" && c.wantErr != "":
		return c.stricter + "; upstream's own error: " + c.wantErr
	case c.stricter != "":
		return c.stricter
	case c.wantSkip:
		return "skipped as another issuer's token"
	}
	return c.wantErr
}

func celExpr(expression string) apiserver.PrefixedClaimOrExpression {
	return apiserver.PrefixedClaimOrExpression{Expression: expression}
}

func celUID(expression string) apiserver.ClaimOrExpression {
	return apiserver.ClaimOrExpression{Expression: expression}
}

func describeUser(u user.Info) string {
	return fmt.Sprintf("{name %q, uid %q, groups %q, extra %v}", u.GetName(), u.GetUID(), u.GetGroups(), u.GetExtra())
}

// conformanceKeys stand in for upstream's testdata keys: two RSA 2048 keys and two P-521 keys, named
// rsa1, rsa2, ec1 and ec2, each with its JWK thumbprint as kid as upstream.
type conformanceKeys map[string]crypto.Signer

func newConformanceKeys(t *testing.T) conformanceKeys {
	t.Helper()
	keys := conformanceKeys{}
	for _, name := range []string{"rsa1", "rsa2"} {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	for _, name := range []string{"ec1", "ec2"} {
		k, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	return keys
}

// key returns the named key as a JWK of alg; spec is "name:alg".
func (k conformanceKeys) key(t *testing.T, spec string, private bool) jose.JSONWebKey {
	t.Helper()
	name, alg, _ := strings.Cut(spec, ":")
	signer, ok := k[name]
	if !ok {
		t.Fatalf("no key %q", name)
	}
	thumbprint, err := (&jose.JSONWebKey{Key: signer.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: signer.Public(), KeyID: hex.EncodeToString(thumbprint), Algorithm: alg, Use: "sig"}
	if private {
		jwk.Key = signer
	}
	return jwk
}

// jwks returns the JWKS of the keys in specs ("name:alg,name:alg").
func (k conformanceKeys) jwks(t *testing.T, specs string) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, spec := range strings.Split(specs, ",") {
		set.Keys = append(set.Keys, k.key(t, spec, false))
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign signs payload as is, with the key and alg of spec, under a header of alg and kid (as upstream).
func (k conformanceKeys) sign(t *testing.T, spec, payload string) string {
	t.Helper()
	jwk := k.key(t, spec, true)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(jwk.Algorithm), Key: jwk}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// checkConformanceComplete requires every upstream case name exactly once across the table and the
// not-applicable list, and nothing else there.
func checkConformanceComplete(t *testing.T, upstream []string, cases []conformanceCase, na []conformanceNA) {
	t.Helper()
	seen := map[string]string{}
	note := func(name, where string) {
		if prev, ok := seen[name]; ok {
			t.Errorf("upstream case %q is listed twice (%s and %s)", name, prev, where)
		}
		seen[name] = where
	}
	for _, c := range cases {
		note(c.name, "the table")
	}
	for _, n := range na {
		note(n.name, "conformanceNotApplicable")
	}
	want := map[string]bool{}
	for _, name := range upstream {
		if want[name] {
			t.Errorf("upstream names case %q twice; the table cannot tell them apart", name)
		}
		want[name] = true
		if _, ok := seen[name]; !ok {
			t.Errorf("upstream case %q is neither in the table nor in conformanceNotApplicable: translate it", name)
		}
	}
	for name, where := range seen {
		if !want[name] {
			t.Errorf("%q in %s is not an upstream TestToken case (renamed or removed upstream?)", name, where)
		}
	}
}

// upstreamTestTokenCases parses k8s.io/apiserver's oidc_test.go from the module cache and returns the
// module version and TestToken's case names. It skips when the source is not available.
func upstreamTestTokenCases(t *testing.T) (version string, names []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}} {{.Dir}}", "k8s.io/apiserver")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot locate k8s.io/apiserver with go list -m (%v: %s); the completeness check needs its source", err, bytes.TrimSpace(stderr.Bytes()))
	}
	version, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	file := filepath.Join(dir, "plugin", "pkg", "authenticator", "token", "oidc", "oidc_test.go")
	src, err := os.ReadFile(file)
	if dir == "" || err != nil {
		t.Skipf("k8s.io/apiserver %s source is not in the module cache (%q: %v); run go mod download k8s.io/apiserver for the completeness check", version, dir, err)
	}
	if version != conformanceUpstreamVersion {
		t.Logf("go.mod has k8s.io/apiserver %s, the table was translated from %s: review changed expectations too", version, conformanceUpstreamVersion)
	}
	f, err := parser.ParseFile(token.NewFileSet(), file, src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "TestToken" || fn.Body == nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if arr, ok := lit.Type.(*ast.ArrayType); !ok || !isIdent(arr.Elt, "claimsTest") {
				return true
			}
			for _, elt := range lit.Elts {
				tc, ok := elt.(*ast.CompositeLit)
				if !ok {
					continue
				}
				for _, field := range tc.Elts {
					kv, ok := field.(*ast.KeyValueExpr)
					if !ok || !isIdent(kv.Key, "name") {
						continue
					}
					bl, ok := kv.Value.(*ast.BasicLit)
					if !ok || bl.Kind != token.STRING {
						t.Errorf("a TestToken case name is not a string literal: %T", kv.Value)
						continue
					}
					name, err := strconv.Unquote(bl.Value)
					if err != nil {
						t.Fatal(err)
					}
					names = append(names, name)
				}
			}
			return false
		})
	}
	if len(names) == 0 {
		t.Fatalf("found no TestToken cases ([]claimsTest{...} with name fields) in %s: upstream changed shape, update upstreamTestTokenCases", file)
	}
	return version, names
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}
