package resource

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse feeds Parse arbitrary files. The seed corpus in
// testdata/fuzz/FuzzParse holds the files of testdata/parse and more edge
// cases. Parse must never panic, must report problems as a located list, and
// what it accepts must survive a round trip through YAML unchanged.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Parse("f.yaml", data)
		if err != nil {
			var l ErrorList
			if !errors.As(err, &l) || len(l) == 0 || objs != nil {
				t.Fatalf("Parse = %d objects, %#v", len(objs), err)
			}
			return
		}
		for _, o := range objs {
			if o.Spec == nil || !isName(o.Metadata.Name) || o.Origin.Line < 1 {
				t.Fatalf("Parse accepted %+v", o)
			}
		}
		_ = Validate(objs) // must not panic
		again, err := Parse("g.yaml", marshal(t, objs))
		if err != nil {
			t.Fatalf("parsing what Parse accepted, marshaled again: %v", err)
		}
		for i := range objs {
			objs[i].Origin, again[i].Origin = Origin{}, Origin{}
		}
		if a, b := marshal(t, objs), marshal(t, again); !bytes.Equal(a, b) {
			t.Fatalf("round trip changed objects:\n%s\n%s", a, b)
		}
	})
}

// FuzzMarshalRoundTrip checks Marshal against Parse: for any file Parse
// accepts, Parse must accept what Marshal writes of its objects and return
// them unchanged (Origin aside), and Marshal must then write the same bytes.
// The seed corpus is in testdata/fuzz/FuzzMarshalRoundTrip.
func FuzzMarshalRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Parse("f.yaml", data)
		if err != nil {
			return
		}
		out := Marshal(objs)
		again, err := Parse("g.yaml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal(objs)): %v\n%s", err, out)
		}
		if ok, why := equalSets(objs, again); !ok {
			t.Fatalf("round trip changed objects: %s\n%s", why, out)
		}
		if out2 := Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not idempotent:\n%s\n----\n%s", out, out2)
		}
	})
}
