package resource

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestParseGolden parses each testdata/parse/*.yaml. The golden file holds,
// for a valid file, the objects with their defaults as YAML, and for an
// invalid one the error message.
func TestParseGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/parse/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			objs, err := LoadFile(file)
			var got []byte
			switch valid := strings.HasPrefix(name, "valid"); {
			case valid && err != nil:
				t.Fatalf("LoadFile: %v", err)
			case !valid && err == nil:
				t.Fatalf("LoadFile succeeded, want an error")
			case valid:
				got = marshal(t, objs)
			default:
				got = []byte(err.Error() + "\n")
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// marshal writes objects as a YAML stream, each after a comment saying
// where it was read.
func marshal(t testing.TB, objs []Object) []byte {
	var b bytes.Buffer
	for _, o := range objs {
		fmt.Fprintf(&b, "--- # %s:%d\n", o.Origin.File, o.Origin.Line)
		out, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
	}
	return b.Bytes()
}

func TestParseDefaultsAndOrigin(t *testing.T) {
	objs, err := Parse("f.yaml", []byte(`apiVersion: ward/v1
kind: AccessPolicy
metadata:
  name: p
spec:
  target: orders
  rules:
  - from: ["*"]
    when: >-
      true
`))
	if err != nil {
		t.Fatal(err)
	}
	spec := objs[0].Spec.(*AccessPolicySpec)
	if spec.Mode != ModeEnforce || spec.Rules[0].Methods[0] != AnyMethod || spec.Rules[0].Paths[0] != AnyPath {
		t.Errorf("defaults not applied: %+v", spec)
	}
	for path, want := range map[string]int{
		"":                    1,
		"metadata.name":       4,
		"spec.rules[0]":       8,
		"spec.rules[0].when":  9,
		"spec.rules[0].paths": 8, // not in the document: the rule's line
		"spec.rules[7].from":  7, // nor is this: the rules' line
	} {
		if got := objs[0].Origin.LineOf(path); got != want {
			t.Errorf("LineOf(%q) = %d, want %d", path, got, want)
		}
	}
	if got, want := objs[0].Origin.Errorf("spec.rules[0].when", "bad %s", "x").Error(), "f.yaml:9: spec.rules[0].when: bad x"; got != want {
		t.Errorf("Errorf = %q, want %q", got, want)
	}
}

func TestValidate(t *testing.T) {
	const (
		svc    = "apiVersion: ward/v1\nkind: Service\nmetadata: {name: orders}\nspec: {endpoints: [\"a:1\"]}\n"
		tcp    = "apiVersion: ward/v1\nkind: Service\nmetadata: {name: db}\nspec: {protocol: tcp, endpoints: [\"a:1\"]}\n"
		issuer = "apiVersion: ward/v1\nkind: Issuer\nmetadata: {name: corp}\nspec: {issuerURL: \"https://idp\", audiences: [api]}\n"
		route  = "apiVersion: ward/v1\nkind: Route\nmetadata: {name: %s}\nspec:\n  pathPrefix: /orders\n  service: %s\n  auth: {issuers: %s}\n"
		policy = "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: %s\n  rules:\n  - from: [\"*\"]\n%s"
	)
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"references resolve", []string{svc, fmt.Sprintf(policy, "orders", "")}, ""},
		{"across files", []string{svc + "---\n" + tcp, fmt.Sprintf(policy, "db", "")}, ""},
		{"unknown target", []string{svc, fmt.Sprintf(policy, "users", "")},
			`f1.yaml:5: spec.target: no Service named "users"`},
		{"duplicate across files", []string{svc, svc},
			`f1.yaml:3: metadata.name: Service "orders" already defined at f0.yaml:3`},
		{"methods for tcp", []string{tcp, fmt.Sprintf(policy, "db", "    methods: [GET]\n")},
			`f1.yaml:7: spec.rules[0]: methods and paths do not apply to tcp Service "db"`},
		{"paths for tcp", []string{tcp, fmt.Sprintf(policy, "db", "    paths: [/x]\n")},
			`f1.yaml:7: spec.rules[0]: methods and paths do not apply to tcp Service "db"`},
		{"route resolves", []string{svc + "---\n" + issuer, fmt.Sprintf(route, "r1", "orders", "[corp]")}, ""},
		{"route to a missing service", []string{issuer, fmt.Sprintf(route, "r1", "users", "[corp]")},
			`f1.yaml:6: spec.service: no Service named "users"`},
		{"route with a missing issuer", []string{svc, fmt.Sprintf(route, "r1", "orders", "[corp]")},
			`f1.yaml:7: spec.auth.issuers[0]: no Issuer named "corp"`},
		{"conflicting routes", []string{svc, fmt.Sprintf(route, "r1", "orders", "[]"), fmt.Sprintf(route, "r2", "orders", "[]")},
			`f2.yaml:5: spec.pathPrefix: Route "r1" already answers host "" and prefix /orders (f1.yaml:3)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var all []Object
			for i, src := range tt.files {
				objs, err := Parse(fmt.Sprintf("f%d.yaml", i), []byte(src))
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				all = append(all, objs...)
			}
			got := ""
			if err := Validate(all); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate:\ngot:  %s\nwant: %s", got, tt.want)
			}
		})
	}
}

// TestValidateBuilt covers objects built in code rather than parsed.
func TestValidateBuilt(t *testing.T) {
	objs := []Object{
		{APIVersion: APIVersion, Kind: KindService, Metadata: Metadata{Name: "a"}},
		{APIVersion: APIVersion, Kind: KindService, Metadata: Metadata{Name: "b"}, Spec: &AccessPolicySpec{}},
	}
	want := "spec: required\nspec: *resource.AccessPolicySpec is not the spec of a Service"
	if err := Validate(objs); err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %s", err, want)
	}
}

func TestParseLimits(t *testing.T) {
	doc := "apiVersion: ward/v1\nkind: Service\nmetadata: {name: s%d}\nspec: {endpoints: [\"a:1\"]}\n---\n"
	var many strings.Builder
	for i := range MaxDocuments + 1 {
		fmt.Fprintf(&many, doc, i)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"too large", bytes.Repeat([]byte("#"), MaxFileSize+1), "f.yaml: file is larger than 4194304 bytes"},
		{"too many documents", []byte(many.String()), "f.yaml:5001: more than 1000 documents"},
		{"control character", []byte("a: \x01"), "f.yaml: control characters are not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Parse("f.yaml", tt.data)
			if err == nil || err.Error() != tt.want || objs != nil {
				t.Errorf("Parse = %d objects, %v; want %s", len(objs), err, tt.want)
			}
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	if _, err := LoadFile(filepath.Join(t.TempDir(), "none.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile = %v, want not exist", err)
	}
}

func TestErrorList(t *testing.T) {
	l := ErrorList{
		{File: "b.yaml", Line: 2, Msg: "third"},
		{File: "a.yaml", Line: 7, Path: "spec", Msg: "second"},
		{File: "a.yaml", Line: 3, Msg: "first"},
		{Msg: "no location"},
	}
	err := l.Err()
	want := "no location\na.yaml:3: first\na.yaml:7: spec: second\nb.yaml:2: third"
	if err.Error() != want {
		t.Errorf("Err() =\n%s\nwant\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Msg != "no location" {
		t.Errorf("errors.As found %v, want the first problem", e)
	}
	if got := AsList(err); len(got) != 4 {
		t.Errorf("AsList = %v, want the 4 problems", got)
	}
	if got := AsList(e); len(got) != 1 || got[0] != e {
		t.Errorf("AsList(*Error) = %v", got)
	}
	if got := AsList(errors.New("plain")); len(got) != 1 || got[0].Error() != "plain" {
		t.Errorf("AsList(plain) = %v", got)
	}
	if AsList(nil) != nil || ErrorList(nil).Err() != nil {
		t.Error("no problems should make no error")
	}
}

func TestIsName(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "orders": true, "orders-v2": true, "0": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "a-": false, "A": false, "a_b": false, "a.b": false, strings.Repeat("a", 64): false,
	} {
		if isName(s) != want {
			t.Errorf("isName(%q) = %v, want %v", s, !want, want)
		}
	}
}

func TestChanges(t *testing.T) {
	parse := func(src string) []Object {
		objs, err := Parse("f.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}
	const a = "apiVersion: ward/v1\nkind: Service\nmetadata: {name: a}\nspec: {endpoints: [\"h:1\"]}\n"
	const b = "apiVersion: ward/v1\nkind: Service\nmetadata: {name: b}\nspec: {endpoints: [\"h:1\"]}\n"
	const b2 = "apiVersion: ward/v1\nkind: Service\nmetadata: {name: b}\nspec: {endpoints: [\"h:2\"]}\n"
	const c = "apiVersion: ward/v1\nkind: Service\nmetadata: {name: c}\nspec: {endpoints: [\"h:1\"]}\n"
	got := strings.Join(Changes(parse(a+"---\n"+b), parse(b2+"---\n"+c)), " ")
	if want := "-Service/a ~Service/b +Service/c"; got != want {
		t.Errorf("Changes = %q, want %q", got, want)
	}
	if got := Changes(parse(a), parse(a)); len(got) != 0 {
		t.Errorf("no change: %q", got)
	}
}

// TestRulePathsCaseInsensitive (issue 12 finding 11): a rule may declare
// its paths case-insensitive, for apps that fold case; the key is decoded
// strictly (a misspelling or a non-boolean is an error with file and line)
// and, like paths, does not apply to a tcp Service.
func TestRulePathsCaseInsensitive(t *testing.T) {
	const doc = "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: orders\n  rules:\n  - from: [\"*\"]\n    paths: [/Orders/*]\n%s"
	objs, err := Parse("f.yaml", fmt.Appendf(nil, doc, "    pathsCaseInsensitive: true\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if out := marshal(t, objs); !bytes.Contains(out, []byte("pathsCaseInsensitive: true")) {
		t.Fatalf("the option was not kept:\n%s", out)
	}
	objs, err = Parse("f.yaml", fmt.Appendf(nil, doc, ""))
	if err != nil {
		t.Fatal(err)
	}
	if out := marshal(t, objs); bytes.Contains(out, []byte("pathsCaseInsensitive")) {
		t.Fatalf("the option appears when not set:\n%s", out)
	}
	for _, tt := range []struct{ extra, want string }{
		{"    pathsCaseinsensitive: true\n", `f.yaml:9: spec.rules[0].pathsCaseinsensitive: unknown field`},
		{"    pathsCaseInsensitive: often\n", `f.yaml:9:`},
	} {
		if _, err := Parse("f.yaml", fmt.Appendf(nil, doc, tt.extra)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse with %q: %v, want an error containing %q", tt.extra, err, tt.want)
		}
	}
	tcp := "apiVersion: ward/v1\nkind: Service\nmetadata: {name: db}\nspec: {protocol: tcp, endpoints: [\"a:1\"]}\n"
	pol := "apiVersion: ward/v1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n  target: db\n  rules:\n  - from: [\"*\"]\n    pathsCaseInsensitive: true\n"
	a, err := Parse("f0.yaml", []byte(tcp))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("f1.yaml", []byte(pol))
	if err != nil {
		t.Fatal(err)
	}
	want := `f1.yaml:7: spec.rules[0]: methods and paths do not apply to tcp Service "db"`
	if err := Validate(append(a, b...)); err == nil || err.Error() != want {
		t.Errorf("Validate: %v, want %s", err, want)
	}
}
