package resource

import (
	"fmt"

	"github.com/wardsec/ward/internal/vault"
)

// KindSecretPolicy is the kind of the resource that says who may read
// which secrets.
const KindSecretPolicy = "SecretPolicy"

// SecretPolicySpec lets the workloads named in Readers read the secrets
// whose paths match Paths. Secrets are denied unless a policy allows them.
// The values themselves never appear in resources: `ward secret put`
// stores them in the vault.
type SecretPolicySpec struct {
	// Readers are SPIFFE ID paths without the trust domain ("svc/orders"),
	// a segment "*" matching one segment, as in an AccessPolicy's from.
	// Required.
	Readers []string `yaml:"readers"`
	// Paths are secret path patterns: a secret path ("orders/db/password")
	// whose segments may be "*" (one segment) and whose last segment may
	// be "**" (everything below). The first segment names the service
	// that owns the secrets, whose developers may change the policy.
	// Required.
	Paths []string `yaml:"paths"`
}

func (s *SecretPolicySpec) setDefaults() {}

func (s *SecretPolicySpec) validate(v validator) {
	if len(s.Readers) == 0 {
		v.errorf("spec.readers", `required: list the identities that may read, such as "svc/orders"`)
	}
	for i, p := range s.Readers {
		if p == "*" {
			v.errorf(fmt.Sprintf("spec.readers[%d]", i), `"*" would let every identity read: name the readers ("svc/orders", "svc/*")`)
		} else if err := checkIDPattern(p); err != nil {
			v.errorf(fmt.Sprintf("spec.readers[%d]", i), "invalid reader %q: %v", p, err)
		}
	}
	if len(s.Paths) == 0 {
		v.errorf("spec.paths", `required: list secret paths, such as "orders/db/password" or "orders/**"`)
	}
	for i, p := range s.Paths {
		if err := vault.CheckPattern(p); err != nil {
			v.errorf(fmt.Sprintf("spec.paths[%d]", i), "invalid path: %v", err)
		}
	}
}

// secretOwners returns the services owning every path of a SecretPolicy,
// or nil when a path's first segment is a wildcard (only admins may
// change such a policy).
func (s *SecretPolicySpec) secretOwners() []string {
	var out []string
	for _, p := range s.Paths {
		owner := vault.PatternOwner(p)
		if owner == "" {
			return nil
		}
		out = append(out, owner)
	}
	return out
}
