package authn

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	authenticationcel "k8s.io/apiserver/pkg/authentication/cel"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
	"k8s.io/utils/clock"
)

// Config is everything an issuer entry needs, already defaulted by the caller. It mirrors the
// OpenIDConnect spec without depending on the API package.
type Config struct {
	// Name and UID identify the object that declared the issuer; they appear in the user's extra.
	Name string
	UID  string
	// CreatedAt orders entries that share an issuer: oldest first, then by name.
	CreatedAt time.Time

	Issuer       string
	DiscoveryURL string
	Audiences    []string
	CABundle     []byte
	StaticJWKS   []byte
	SigningAlgs  []string

	UsernameClaim  string
	UsernamePrefix string // effective: "" means no prefix
	GroupsClaim    string
	GroupsPrefix   string // effective: "" means no prefix

	ServiceAccountGroups bool
	RequiredClaims       map[string]string
	ExtraClaims          []string
	MaxTokenLifetime     time.Duration

	// ClaimValidationRules, the CEL parts of ClaimMappings and UserValidationRules use the semantics of
	// Kubernetes' AuthenticationConfiguration. A Username or Groups expression replaces the claim.
	ClaimValidationRules []apiserver.ClaimValidationRule
	ClaimMappings        apiserver.ClaimMappings
	UserValidationRules  []apiserver.UserValidationRule

	RefreshInterval    time.Duration
	MinRefetchInterval time.Duration
}

// EntryOptions are an entry's collaborators, shared by all entries of a process.
type EntryOptions struct {
	// Compiler is the shared CEL compiler; building one is expensive.
	Compiler authenticationcel.Compiler
	Log      logr.Logger
	Clock    clock.WithTicker
	// OnRefresh is called after each key fetch attempt, so the control loop can report it.
	OnRefresh func()
	// Metrics, when set, records key fetches.
	Metrics *Metrics
}

// Entry verifies tokens of one OpenIDConnect object. It owns its key set's background refresh.
type Entry struct {
	// routed is true while the router serves this entry; cached results of an entry that is no longer
	// routed (deleted, replaced or in conflict) are discarded.
	routed     atomic.Bool
	issuerHash string
	cfg        Config
	keys       *KeySet
	// general is k8s.io/apiserver's JWT authenticator for this entry. An entry the fast path serves
	// needs it only for the rare token the fast path hands over, so it is built on first use (about
	// 1.3 KB an entry otherwise, 13 MB with 10,000 objects); NewEntry still builds it once to refuse
	// an invalid configuration.
	general  func() (authenticator.Token, error)
	compiler authenticationcel.Compiler
	// fast is set when the entry uses no CEL, so the fast path serves it (see fastpath.go); required
	// is then its required claims, merged as the apiserver merges them.
	fast     bool
	required map[string]string
	// audiences are the configured audiences as the apiserver holds them: a set, sorted.
	audiences []string
	ctx       context.Context // lives until Close
	cancel    context.CancelFunc
}

// NewCompiler returns the CEL compiler to share between entries.
func NewCompiler() authenticationcel.Compiler { return authenticationcel.NewDefaultCompiler() }

// NewEntry compiles cfg into an entry. It performs no I/O: call Start to begin loading keys.
// The error explains what in cfg is invalid; CEL compile errors are included verbatim.
func NewEntry(cfg Config, opts EntryOptions) (*Entry, error) {
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("at least one audience is required")
	}
	if opts.Compiler == nil {
		opts.Compiler = NewCompiler()
	}
	for _, a := range cfg.SigningAlgs {
		if !slices.Contains(AllSigningAlgs, a) {
			return nil, fmt.Errorf("signing algorithm %q is not allowed: use an asymmetric algorithm", a)
		}
	}
	var client *http.Client
	if len(cfg.StaticJWKS) == 0 {
		var err error
		if client, err = NewHTTPClient(cfg.CABundle); err != nil {
			return nil, err
		}
	}
	keys, err := NewKeySet(KeySetOptions{
		Issuer:             cfg.Issuer,
		DiscoveryURL:       cfg.DiscoveryURL,
		StaticJWKS:         cfg.StaticJWKS,
		Client:             client,
		SigningAlgs:        cfg.SigningAlgs,
		RefreshInterval:    cfg.RefreshInterval,
		MinRefetchInterval: cfg.MinRefetchInterval,
		OnRefresh:          opts.OnRefresh,
		Metrics:            opts.Metrics,
		Clock:              opts.Clock,
		Log:                opts.Log,
	})
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	e := &Entry{cfg: cfg, keys: keys, compiler: opts.Compiler, ctx: ctx, cancel: cancel, issuerHash: IssuerHash(cfg.Issuer)}
	jwt, err := e.buildGeneral()
	if err != nil {
		cancel()
		return nil, err
	}
	e.general = func() (authenticator.Token, error) { return jwt, nil }
	e.audiences = slices.Compact(slices.Sorted(slices.Values(cfg.Audiences)))
	if e.fast = fastPathEligible(cfg); e.fast {
		e.general = sync.OnceValues(e.buildGeneral) // the same configuration again: it cannot fail differently
		if rules := jwtAuthenticator(cfg).ClaimValidationRules; len(rules) > 0 {
			e.required = make(map[string]string, len(rules))
			for _, r := range rules {
				e.required[r.Claim] = r.RequiredValue // the apiserver refuses a claim named twice
			}
		}
	}
	return e, nil
}

// buildGeneral builds k8s.io/apiserver's JWT authenticator for the entry.
func (e *Entry) buildGeneral() (authenticator.Token, error) {
	algs := e.cfg.SigningAlgs
	if len(algs) == 0 {
		algs = AllSigningAlgs
	}
	return oidc.New(e.ctx, oidc.Options{
		JWTAuthenticator:     jwtAuthenticator(e.cfg),
		KeySet:               e.keys,
		Compiler:             e.compiler,
		SupportedSigningAlgs: algs,
		// The apiserver authenticator fetches "distributed claims" from URLs named inside a token. A
		// webhook must not make requests on a token's say-so, so that client refuses every request.
		Client: &http.Client{Transport: refuseTransport{}},
	})
}

// jwtAuthenticator translates cfg into the apiserver's JWT authenticator configuration.
func jwtAuthenticator(cfg Config) apiserver.JWTAuthenticator {
	j := apiserver.JWTAuthenticator{
		Issuer: apiserver.Issuer{
			URL:                 cfg.Issuer,
			Audiences:           cfg.Audiences,
			AudienceMatchPolicy: apiserver.AudienceMatchPolicyMatchAny,
		},
		ClaimValidationRules: append([]apiserver.ClaimValidationRule(nil), cfg.ClaimValidationRules...),
		ClaimMappings:        cfg.ClaimMappings,
		UserValidationRules:  cfg.UserValidationRules,
	}
	for _, claim := range slices.Sorted(maps.Keys(cfg.RequiredClaims)) {
		j.ClaimValidationRules = append(j.ClaimValidationRules, apiserver.ClaimValidationRule{Claim: claim, RequiredValue: cfg.RequiredClaims[claim]})
	}
	if j.ClaimMappings.Username.Expression == "" {
		prefix := cfg.UsernamePrefix
		j.ClaimMappings.Username = apiserver.PrefixedClaimOrExpression{Claim: cfg.UsernameClaim, Prefix: &prefix}
	}
	if j.ClaimMappings.Groups.Expression == "" && cfg.GroupsClaim != "" {
		prefix := cfg.GroupsPrefix
		j.ClaimMappings.Groups = apiserver.PrefixedClaimOrExpression{Claim: cfg.GroupsClaim, Prefix: &prefix}
	}
	return j
}

// Start begins loading keys in the background; Close stops it.
func (e *Entry) Start() { e.keys.Start(e.ctx) }

// Close stops the entry's background work. The entry must not be used afterwards.
func (e *Entry) Close() { e.cancel() }

// Config returns the configuration the entry was built from.
func (e *Entry) Config() Config { return e.cfg }

// KeyStatus reports the health of the entry's keys.
func (e *Entry) KeyStatus() KeySetStatus { return e.keys.Status() }

// authenticate verifies token and maps it to a user: (resp, expiry, nil) authenticated, with the
// token's expiry that bounds caching; (nil, _, err) rejected, err saying why in words safe to return to
// the caller (never the token).
func (e *Entry) authenticate(ctx context.Context, token string) (*authenticator.Response, time.Time, error) {
	if e.fast {
		resp, expiry, err := e.authenticateFast(ctx, token)
		if !errors.Is(err, errFallback) {
			return resp, expiry, err
		}
	}
	return e.authenticateGeneral(ctx, token)
}

// authenticateGeneral runs k8s.io/apiserver's JWT authenticator, then clustertrust's mapping.
func (e *Entry) authenticateGeneral(ctx context.Context, token string) (*authenticator.Response, time.Time, error) {
	jwt, err := e.general()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("could not build the JWT authenticator: %w", err)
	}
	ctx, payload := withPayloadRecorder(ctx)
	resp, ok, err := jwt.AuthenticateToken(ctx, token)
	if err != nil {
		return nil, time.Time{}, err
	}
	if !ok {
		// The apiserver authenticator declines, without an error, a token whose iss it cannot read or is
		// not its issuer.
		if err := reviewToken(ctx, token).err; err != nil {
			return nil, time.Time{}, err // PeekIssuer's error
		}
		return nil, time.Time{}, e.wrongIssuer()
	}
	expiry, err := e.mapUser(resp, *payload, requestedAudiences(ctx))
	if err != nil {
		return nil, time.Time{}, err
	}
	return resp, expiry, nil
}

// wrongIssuer is the refusal of a token whose iss is readable but not the entry's issuer.
func (e *Entry) wrongIssuer() error {
	return fmt.Errorf("%w: the token's iss is not %s", ErrUnknownIssuer, e.cfg.Issuer)
}

// refuseTransport fails every request; see NewEntry.
type refuseTransport struct{}

func (refuseTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("distributed claims are not supported")
}
