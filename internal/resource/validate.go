package resource

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/wardsec/ward/internal/waf"
)

// Validate checks a complete set of objects, such as everything applied
// together or a snapshot: each object as Parse does, that no kind and name is
// defined twice, and the references between objects (an AccessPolicy targets
// a Service of the set; rules for a tcp Service cannot name methods or paths).
// It reports every problem as an [ErrorList].
func Validate(objs []Object) error {
	var errs ErrorList
	check(objs, &errs, true)
	return errs.Err()
}

// check validates objs into errs, with references between them when refs is
// set.
func check(objs []Object, errs *ErrorList, refs bool) {
	type key struct{ kind, name string }
	first := map[key]*Object{}
	for i := range objs {
		o := &objs[i]
		validator{o, errs}.object()
		k := key{o.Kind, o.Metadata.Name}
		if prev := first[k]; prev != nil && k.name != "" {
			*errs = append(*errs, o.Origin.Errorf("metadata.name", "%s %q already defined at %s", k.kind, k.name, prev.Origin.at("metadata.name")))
		} else if prev == nil {
			first[k] = o
		}
	}
	if !refs {
		return
	}
	checkRoutes(objs, errs, func(kind, name string) bool { return first[key{kind, name}] != nil })
	for i := range objs {
		p, ok := objs[i].Spec.(*AccessPolicySpec)
		if !ok || objs[i].Kind != KindAccessPolicy {
			continue
		}
		v := validator{&objs[i], errs}
		svc := first[key{KindService, p.Target}]
		if svc == nil {
			v.errorf("spec.target", "no Service named %q", p.Target)
			continue
		}
		if s, ok := svc.Spec.(*ServiceSpec); ok && s.Protocol == ProtocolTCP {
			for j, r := range p.Rules {
				if !slices.Equal(r.Methods, []string{AnyMethod}) || !slices.Equal(r.Paths, []string{AnyPath}) || r.PathsCaseInsensitive {
					v.errorf(fmt.Sprintf("spec.rules[%d]", j), "methods and paths do not apply to tcp Service %q", p.Target)
				}
			}
		}
	}
}

// validator checks one object.
type validator struct {
	o    *Object
	errs *ErrorList
}

// errorf reports a problem with the field at path, unless decoding it
// already failed.
func (v validator) errorf(path, format string, args ...any) {
	if v.o.Origin.decoded(path) {
		*v.errs = append(*v.errs, v.o.Origin.Errorf(path, format, args...))
	}
}

func (v validator) object() {
	o := v.o
	switch {
	case o.APIVersion == "":
		v.errorf("apiVersion", "required")
	case o.APIVersion != APIVersion:
		v.errorf("apiVersion", "unsupported version %q (want %s)", o.APIVersion, APIVersion)
	}
	newSpec := kinds[o.Kind]
	switch {
	case o.Kind == "":
		v.errorf("kind", "required")
	case newSpec == nil:
		v.errorf("kind", "unknown kind %q (known: %s)", o.Kind, knownKinds)
	}
	v.name("metadata.name", o.Metadata.Name)
	switch {
	case newSpec == nil:
	case o.Spec == nil:
		v.errorf("spec", "required")
	case reflect.TypeOf(o.Spec) != reflect.TypeOf(newSpec()):
		v.errorf("spec", "%T is not the spec of a %s", o.Spec, o.Kind)
	default:
		o.Spec.validate(v)
	}
}

// name checks a reference to or the name of an object.
func (v validator) name(path, s string) {
	if s == "" {
		v.errorf(path, "required")
	} else if !isName(s) {
		v.errorf(path, "invalid name %q: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters", s)
	}
}

// isName reports whether s is a DNS label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at
// most 63 characters.
func isName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

func (s *ServiceSpec) validate(v validator) {
	switch s.Protocol {
	case ProtocolHTTP, ProtocolGRPC, ProtocolTCP:
	default:
		v.errorf("spec.protocol", "unknown protocol %q (want http, grpc or tcp)", s.Protocol)
	}
	for i, ep := range s.Endpoints {
		path := fmt.Sprintf("spec.endpoints[%d]", i)
		host, port, err := net.SplitHostPort(ep)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			v.errorf(path, "invalid endpoint %q: want host:port with a port from 1 to 65535", ep)
		} else if slices.Index(s.Endpoints, ep) < i {
			v.errorf(path, "duplicate endpoint %q", ep)
		}
	}
	if s.Port < 0 || s.Port > 65535 {
		v.errorf("spec.port", "port %d out of range 1-65535", s.Port)
	}
	s.Limits.validate(v)
	s.WAF.validate(v)
	if s.Protocol == ProtocolTCP && s.WAF.WAFMode() != waf.Off {
		v.errorf("spec.waf.mode", "a tcp Service carries no requests to inspect")
	}
}

func (s *AccessPolicySpec) validate(v validator) {
	v.name("spec.target", s.Target)
	switch s.Mode {
	case ModeEnforce, ModeDryRun:
	default:
		v.errorf("spec.mode", "unknown mode %q (want enforce or dry-run)", s.Mode)
	}
	for i, r := range s.Rules {
		path := fmt.Sprintf("spec.rules[%d]", i)
		if len(r.From) == 0 {
			v.errorf(path+".from", `required: list callers, or "*" for any identity of the trust domain`)
		}
		for j, p := range r.From {
			if err := checkIDPattern(p); err != nil {
				v.errorf(fmt.Sprintf("%s.from[%d]", path, j), "invalid caller %q: %v", p, err)
			}
		}
		if r.Methods != nil && len(r.Methods) == 0 {
			v.errorf(path+".methods", "must not be empty (omit it to allow any method)")
		}
		for j, m := range r.Methods {
			if m != AnyMethod && !slices.Contains(HTTPMethods[:], m) {
				v.errorf(fmt.Sprintf("%s.methods[%d]", path, j), `unknown method %q (want upper-case %s, or "*")`, m, strings.Join(HTTPMethods[:], ", "))
			}
		}
		if r.Paths != nil && len(r.Paths) == 0 {
			v.errorf(path+".paths", "must not be empty (omit it to allow any path)")
		}
		for j, p := range r.Paths {
			if !strings.HasPrefix(p, "/") {
				v.errorf(fmt.Sprintf("%s.paths[%d]", path, j), "invalid path %q: must start with '/'", p)
			} else if k := strings.IndexByte(p, '*'); k >= 0 && k != len(p)-1 || k > 0 && p[k-1] != '/' {
				v.errorf(fmt.Sprintf("%s.paths[%d]", path, j), `invalid path %q: '*' is only allowed as a final segment ("/prefix/*")`, p)
			}
		}
	}
}

// checkIDPattern checks a caller pattern: a SPIFFE ID path without its leading
// slash, where a segment may be "*", or "*" alone.
func checkIDPattern(p string) error {
	switch {
	case p == "*":
		return nil
	case strings.HasPrefix(p, "spiffe://"):
		return errors.New(`write the path only, such as "svc/catalog": the trust domain is the mesh's`)
	case strings.HasPrefix(p, "/"):
		return errors.New("must not start with '/'")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg != "*" {
			if err := spiffeid.ValidatePathSegment(seg); err != nil {
				return fmt.Errorf("segment %q: %w", seg, err)
			}
		}
	}
	return nil
}
