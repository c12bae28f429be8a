package resource

import (
	"bytes"
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// This file holds the pure functions the server uses as the source of
// truth: it stores every version of the whole set as canonical YAML
// ([Marshal]), changes it ([Merge], [Remove]), shows what a change does
// ([Diff]), decides who may change an object ([Concerns]) and sends each
// proxy only the part of the set that concerns it ([ForSidecar],
// [ForGateway]).

// kindOrder is the order of kinds in canonical output: what is referred to
// before what refers to it. Unknown kinds (only in objects built in code)
// come last, by name.
var kindOrder = []string{KindService, KindAccessPolicy, KindRoute, KindIssuer, KindSecretPolicy, KindBan, KindDetectionRule, KindAllowList}

// Key is "Kind/name".
func Key(o *Object) string { return o.Kind + "/" + o.Metadata.Name }

// compareObjects orders objects by kind (see kindOrder), then name.
func compareObjects(a, b *Object) int {
	rank := func(kind string) int {
		if i := slices.Index(kindOrder, kind); i >= 0 {
			return i
		}
		return len(kindOrder)
	}
	return cmp.Or(cmp.Compare(rank(a.Kind), rank(b.Kind)), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
}

// sorted returns objs in canonical order, without modifying objs.
func sorted(objs []Object) []Object {
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b Object) int { return compareObjects(&a, &b) })
	return out
}

// Marshal writes objs as canonical YAML documents ("---" separated), sorted
// by kind (Service, AccessPolicy, Route, Issuer) then name, each with
// apiVersion, kind, metadata, spec, defaults included. Parse(name,
// Marshal(objs)) gives back objects equal to objs (Origin aside), and
// Marshal of that result is byte-identical. nil/empty -> empty output.
//
// Defaults are applied to a copy, so objects built in code without them
// are written as Parse would return them; objs is not modified.
func Marshal(objs []Object) []byte {
	var b bytes.Buffer
	for i, o := range sorted(objs) {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(marshalObject(&o))
	}
	return b.Bytes()
}

// marshalObject writes one object as a YAML document without a "---" line.
// Each object gets its own yaml.Encoder: one encoder reused for many
// documents keeps every event it has emitted, so it grows with the set.
func marshalObject(o *Object) []byte {
	c := *o
	c.Origin = Origin{}
	if c.Spec != nil {
		c.Spec = deepCopy(reflect.ValueOf(c.Spec)).Interface().(Spec)
		c.Spec.setDefaults()
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		// The spec types are this package's (Spec has unexported
		// methods) and hold only strings, ints, bools, slices and
		// structs: encoding them cannot fail.
		panic(fmt.Sprintf("resource: marshal %s: %v", Key(o), err))
	}
	if err := enc.Close(); err != nil {
		panic(fmt.Sprintf("resource: marshal %s: %v", Key(o), err))
	}
	return b.Bytes()
}

// deepCopy copies a value of the spec types: pointers, structs, slices and
// scalars.
func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(deepCopy(v.Elem()))
		return p
	case reflect.Struct:
		s := reflect.New(v.Type()).Elem()
		s.Set(v) // scalars and unexported fields
		for i := range v.NumField() {
			if s.Field(i).CanSet() {
				s.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return s
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			s.Index(i).Set(deepCopy(v.Index(i)))
		}
		return s
	}
	return v
}

// Merge returns base with each object of objs added, or replacing the object
// of the same kind and name. Neither input is modified. Replaced objects keep
// their place; added ones follow base in the order of objs.
func Merge(base, objs []Object) []Object {
	out := slices.Clone(base)
	at := make(map[string]int, len(out))
	for i := range out {
		at[Key(&out[i])] = i
	}
	for _, o := range objs {
		k := Key(&o)
		if i, ok := at[k]; ok {
			out[i] = o
		} else {
			at[k] = len(out)
			out = append(out, o)
		}
	}
	return out
}

// Remove returns base without the object kind/name, and whether it was there.
// base is not modified.
func Remove(base []Object, kind, name string) ([]Object, bool) {
	out := make([]Object, 0, len(base))
	found := false
	for _, o := range base {
		if o.Kind == kind && o.Metadata.Name == name {
			found = true
			continue
		}
		out = append(out, o)
	}
	return out, found
}

// Render returns what a change from old to new records: the diff, a
// unified diff (---/+++/@@ hunks, 3 lines of context) from the canonical
// YAML of old to that of new, object by object, labelled with the object's
// Kind/name ("" when they are equal); and Marshal(new). Each object of new
// is encoded once for both, and objects whose spec did not change not for
// the diff at all: a change to a large set costs the objects it touches
// plus one encoding of the set.
func Render(old, new []Object) (diff string, documents []byte) {
	type pair struct {
		before, after *Object
		encoded       []byte // canonical YAML of after, once encoded
	}
	pairs := make(map[string]*pair, len(new))
	var keys []*Object // one object per key, for ordering
	for _, side := range []struct {
		objs  []Object
		isOld bool
	}{{old, true}, {new, false}} {
		for i := range side.objs {
			o := &side.objs[i]
			p := pairs[Key(o)]
			if p == nil {
				p = &pair{}
				pairs[Key(o)] = p
				keys = append(keys, o)
			}
			if side.isOld {
				p.before = o
			} else {
				p.after = o
			}
		}
	}
	slices.SortStableFunc(keys, compareObjects)
	var d strings.Builder
	for _, o := range keys {
		p := pairs[Key(o)]
		if p.before != nil && p.after != nil && reflect.DeepEqual(p.before.Spec, p.after.Spec) {
			continue // equal specs encode equally: no hunk
		}
		var a, z []string
		if p.before != nil {
			a = lines(marshalObject(p.before))
		}
		if p.after != nil {
			p.encoded = marshalObject(p.after)
			z = lines(p.encoded)
		}
		d.WriteString(unifiedDiff(Key(o), a, z, 3))
	}
	// Marshal's order, by index, so each object finds its own encoding.
	order := make([]int, len(new))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return compareObjects(&new[i], &new[j]) })
	var b bytes.Buffer
	for n, i := range order {
		if n > 0 {
			b.WriteString("---\n")
		}
		o := &new[i]
		if p := pairs[Key(o)]; p.after == o && p.encoded != nil {
			b.Write(p.encoded)
		} else {
			b.Write(marshalObject(o))
		}
	}
	return d.String(), b.Bytes()
}

// lines splits text into lines, each with its "\n" (the last one may lack
// it).
func lines(text []byte) []string {
	if len(text) == 0 {
		return nil
	}
	l := strings.SplitAfter(string(text), "\n")
	if l[len(l)-1] == "" {
		l = l[:len(l)-1]
	}
	return l
}

// unifiedDiff is the unified diff of lines a to z, both labelled label, with
// context lines around each change; "" when they are equal.
//
// It is written here rather than taken from github.com/pmezard/go-difflib:
// that module is archived (no release since 2016), and a longest common
// subsequence over the lines of one object is a few lines of code.
func unifiedDiff(label string, a, z []string, context int) string {
	ops := diffLines(a, z)
	var b strings.Builder
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		// A hunk: from context lines before this change to context
		// lines after the last change closer than 2*context to the next.
		start := max(i-context, 0)
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				end = j + 1
			} else if j-end >= 2*context {
				break
			}
		}
		end = min(end+context, len(ops))
		if b.Len() == 0 {
			fmt.Fprintf(&b, "--- %s\n+++ %s\n", label, label)
		}
		ai, zi := ops[start].a, ops[start].z
		var an, zn int
		for _, op := range ops[start:end] {
			if op.kind != '+' {
				an++
			}
			if op.kind != '-' {
				zn++
			}
		}
		fmt.Fprintf(&b, "@@ -%s +%s @@\n", hunkRange(ai, an), hunkRange(zi, zn))
		for _, op := range ops[start:end] {
			b.WriteByte(op.kind)
			b.WriteString(op.line)
			if !strings.HasSuffix(op.line, "\n") {
				b.WriteString("\n\\ No newline at end of file\n")
			}
		}
		i = end
	}
	return b.String()
}

// hunkRange formats the start (from 0) and length of a hunk's side as
// unified diffs do: lines count from 1, and an empty side names the line
// before it.
func hunkRange(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start)
	case 1:
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

// diffOp is one line of a diff: ' ' kept, '-' removed, '+' added, at index a
// of the old lines and z of the new.
type diffOp struct {
	kind byte
	line string
	a, z int
}

// maxLCSCells bounds the table of diffLines (int32 cells: 64 MiB). Beyond
// it the differing middle is shown as removed and added whole: still a
// correct diff, only not a minimal one.
const maxLCSCells = 16 << 20

// diffLines returns the edit script from a to z: common prefix and suffix,
// and a longest common subsequence of what lies between.
func diffLines(a, z []string) []diffOp {
	var ops []diffOp
	p := 0
	for p < len(a) && p < len(z) && a[p] == z[p] {
		ops = append(ops, diffOp{' ', a[p], p, p})
		p++
	}
	s := 0
	for s < len(a)-p && s < len(z)-p && a[len(a)-1-s] == z[len(z)-1-s] {
		s++
	}
	am, zm := a[p:len(a)-s], z[p:len(z)-s]
	n, m := len(am), len(zm)
	if n*m > maxLCSCells {
		for i, l := range am {
			ops = append(ops, diffOp{'-', l, p + i, p})
		}
		for j, l := range zm {
			ops = append(ops, diffOp{'+', l, p + n, p + j})
		}
	} else {
		// lcs[i*(m+1)+j] is the length of an LCS of am[i:] and zm[j:].
		lcs := make([]int32, (n+1)*(m+1))
		for i := n - 1; i >= 0; i-- {
			for j := m - 1; j >= 0; j-- {
				if am[i] == zm[j] {
					lcs[i*(m+1)+j] = lcs[(i+1)*(m+1)+j+1] + 1
				} else {
					lcs[i*(m+1)+j] = max(lcs[(i+1)*(m+1)+j], lcs[i*(m+1)+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < n || j < m {
			switch {
			case i < n && j < m && am[i] == zm[j]:
				ops = append(ops, diffOp{' ', am[i], p + i, p + j})
				i++
				j++
			case j == m || i < n && lcs[(i+1)*(m+1)+j] >= lcs[i*(m+1)+j+1]:
				ops = append(ops, diffOp{'-', am[i], p + i, p + j})
				i++
			default:
				ops = append(ops, diffOp{'+', zm[j], p + i, p + j})
				j++
			}
		}
	}
	for k := range s {
		ai, zi := len(a)-s+k, len(z)-s+k
		ops = append(ops, diffOp{' ', a[ai], ai, zi})
	}
	return ops
}

// Concerns returns the services an object is about: a Service its name, an
// AccessPolicy its target, a Route its service, a SecretPolicy the services
// owning its paths (the first segment of each). An Issuer, or a SecretPolicy
// with a wildcard first segment, concerns no single service (nil): only
// admins may change it.
func Concerns(o *Object) []string {
	switch s := o.Spec.(type) {
	case *ServiceSpec:
		if o.Kind == KindService {
			return []string{o.Metadata.Name}
		}
	case *AccessPolicySpec:
		if o.Kind == KindAccessPolicy {
			return []string{s.Target}
		}
	case *RouteSpec:
		if o.Kind == KindRoute {
			return []string{s.Service}
		}
	case *SecretPolicySpec:
		if o.Kind == KindSecretPolicy {
			return s.secretOwners()
		}
	}
	return nil
}

// ForSidecar is what the sidecar of service needs, and no more of the
// mesh's policy: the AccessPolicies that target its own service, and every
// Service (name, protocol, endpoints) so that its outbound side can reach
// them. Whether a call is allowed is decided by the callee's sidecar,
// which alone holds the callee's policies: a compromised sidecar learns
// who may call it, not who may call anyone else. The result passes
// Validate and is in canonical order.
func ForSidecar(objs []Object, service string) []Object {
	var out []Object
	for _, o := range objs {
		switch o.Kind {
		case KindService, KindBan:
			out = append(out, o)
		case KindAccessPolicy:
			if p, ok := o.Spec.(*AccessPolicySpec); ok && p.Target == service {
				out = append(out, o)
			}
		}
	}
	return sorted(out)
}

// ForGateway is what gateway <name> needs: every Route and Issuer, the
// Services that Routes point to, and the AccessPolicies targeting those
// Services (the gateway evaluates them at the edge). The result passes Validate.
//
// Routes are not yet bound to gateways, so every gateway receives the same
// part and name is unused. The result is in canonical order.
func ForGateway(objs []Object, name string) []Object {
	_ = name
	routed := map[string]bool{}
	for i := range objs {
		if r, ok := objs[i].Spec.(*RouteSpec); ok && objs[i].Kind == KindRoute {
			routed[r.Service] = true
		}
	}
	var out []Object
	for _, o := range objs {
		switch o.Kind {
		case KindRoute, KindIssuer, KindBan:
			out = append(out, o)
		case KindService:
			if routed[o.Metadata.Name] {
				out = append(out, o)
			}
		case KindAccessPolicy:
			if p, ok := o.Spec.(*AccessPolicySpec); ok && routed[p.Target] {
				out = append(out, o)
			}
		}
	}
	return sorted(out)
}
