package resource

import (
	"maps"
	"slices"
	"strings"
)

// APIVersion is the version of the schema this package reads.
const APIVersion = "ward/v1"

// Kinds of resources.
const (
	KindService      = "Service"
	KindAccessPolicy = "AccessPolicy"
)

// kinds maps each kind to a constructor of its spec. A new kind (Route, Issuer,
// DetectionRule) is a Spec type and a line here.
var kinds = map[string]func() Spec{
	KindService:       func() Spec { return new(ServiceSpec) },
	KindAccessPolicy:  func() Spec { return new(AccessPolicySpec) },
	KindRoute:         func() Spec { return new(RouteSpec) },
	KindIssuer:        func() Spec { return new(IssuerSpec) },
	KindSecretPolicy:  func() Spec { return new(SecretPolicySpec) },
	KindBan:           func() Spec { return new(BanSpec) },
	KindDetectionRule: func() Spec { return new(DetectionRuleSpec) },
	KindAllowList:     func() Spec { return new(AllowListSpec) },
}

// knownKinds lists the kinds for error messages.
var knownKinds = strings.Join(slices.Sorted(maps.Keys(kinds)), ", ")

// Object is one resource document.
type Object struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`

	// Origin says where the object was read; it is not part of the document.
	Origin Origin `yaml:"-"`
}

// Metadata identifies an object. A name is unique per kind.
type Metadata struct {
	// Name is a DNS label: lowercase letters, digits and '-', starting and
	// ending with a letter or digit, at most 63 characters.
	Name string `yaml:"name"`
}

// Spec is the part of an Object that depends on its kind: *ServiceSpec,
// *AccessPolicySpec, *RouteSpec or *IssuerSpec.
type Spec interface {
	setDefaults()
	validate(v validator)
}

// Protocol is what a Service speaks.
type Protocol string

// Protocols.
const (
	ProtocolHTTP Protocol = "http"
	ProtocolGRPC Protocol = "grpc"
	ProtocolTCP  Protocol = "tcp"
)

// ServiceSpec describes a workload that has an identity
// (spiffe://<trust domain>/svc/<name>) and a sidecar in front of it.
type ServiceSpec struct {
	// Protocol is http (the default), grpc or tcp. For tcp the sidecar
	// authorizes connections, not requests.
	Protocol Protocol `yaml:"protocol"`
	// Endpoints are static host:port addresses of the service's sidecars,
	// for a service whose sidecars do not register themselves (or during a
	// migration); optional. The server adds the addresses its sidecars
	// register (see docs/discovery.md) in each proxy's snapshot.
	Endpoints []string `yaml:"endpoints"`
	// Port is the port of the service's sidecar for mesh traffic; 0 leaves the
	// choice to the sidecar.
	Port int `yaml:"port,omitempty"`
	// Limits bound what one request may send to the service, checked by
	// its sidecar; omitted: a body of at most 1MiB.
	Limits Limits `yaml:"limits,omitempty"`
	// WAF inspects requests at the service's sidecar with the OWASP Core
	// Rule Set; omitted: off. Not for tcp services.
	WAF WAF `yaml:"waf,omitempty"`
}

// Mode says whether an AccessPolicy's denials are enforced.
type Mode string

// Modes.
const (
	// ModeEnforce denies what the policy does not allow (the default).
	ModeEnforce Mode = "enforce"
	// ModeDryRun decides and reports but lets every request through.
	ModeDryRun Mode = "dry-run"
)

// AccessPolicySpec says who may call a Service (east-west). Calls are denied
// unless a rule allows them.
type AccessPolicySpec struct {
	// Target is the name of the Service the policy protects.
	Target string `yaml:"target"`
	// Mode is enforce (the default) or dry-run.
	Mode Mode `yaml:"mode"`
	// Rules allow requests; a request matching any rule is allowed. A policy
	// without rules denies everything.
	Rules []Rule `yaml:"rules"`
}

// Rule allows the requests that match all of its fields.
type Rule struct {
	// From lists callers as SPIFFE ID paths without the trust domain and the
	// leading slash ("svc/catalog", "gateway/edge"). A segment "*" matches
	// exactly one segment ("svc/*"); "*" alone matches every identity of the
	// trust domain. Required.
	From []string `yaml:"from"`
	// Methods are upper-case HTTP methods, or "*" for any (the default).
	Methods []string `yaml:"methods"`
	// Paths are exact paths ("/health") or prefixes written with a final
	// "/*" ("/orders/*" matches /orders/ and everything below it). The
	// default "/*" matches every path. Paths are case-sensitive unless
	// PathsCaseInsensitive is set.
	Paths []string `yaml:"paths"`
	// PathsCaseInsensitive makes Paths match whatever the case of ASCII
	// letters, for apps that fold case ("/orders/*" then matches
	// /Orders/42 and /ORDERS/). Letters outside ASCII, which requests carry
	// percent-encoded, still match exactly.
	PathsCaseInsensitive bool `yaml:"pathsCaseInsensitive,omitempty"`
	// When is an optional CEL condition that must also hold, over the
	// variables request, peer and user (see package policy).
	When string `yaml:"when,omitempty"`
}

// HTTPMethods are the methods a Rule may name, besides "*".
var HTTPMethods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

// AnyMethod and AnyPath are the defaults of Rule.Methods and Rule.Paths.
const (
	AnyMethod = "*"
	AnyPath   = "/*"
)

func (s *ServiceSpec) setDefaults() {
	if s.Protocol == "" {
		s.Protocol = ProtocolHTTP
	}
}

func (s *AccessPolicySpec) setDefaults() {
	if s.Mode == "" {
		s.Mode = ModeEnforce
	}
	if len(s.Rules) == 0 {
		s.Rules = nil // "rules: []" and no rules are the same
	}
	for i := range s.Rules {
		r := &s.Rules[i]
		if r.Methods == nil {
			r.Methods = []string{AnyMethod}
		}
		if r.Paths == nil {
			r.Paths = []string{AnyPath}
		}
	}
}
