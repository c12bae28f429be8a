package resource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits on what Parse reads: one file an operator wrote.
const (
	MaxFileSize  = 4 << 20 // bytes
	MaxDocuments = 1000
)

// Limits on what ParseSet reads: a whole resource set, which the server
// assembles from many files (a stored version, a proxy's snapshot).
const (
	MaxSetSize      = 48 << 20 // bytes
	MaxSetDocuments = 100_000
)

// LoadFile reads and parses the resource file at path.
func LoadFile(path string) ([]Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes the YAML documents in data, applies defaults and validates
// each object, and checks that no kind and name is defined twice. It reports
// every problem it finds as an [ErrorList], sorted by line, and returns no
// objects then. References between objects are checked by [Validate] once
// the whole set is known.
func Parse(filename string, data []byte) ([]Object, error) {
	return parse(filename, data, MaxFileSize, MaxDocuments)
}

// ParseSet is Parse with the limits of a whole set (MaxSetSize,
// MaxSetDocuments) in place of one file's: the server stores and
// distributes sets merged from many files, each within Parse's limits.
func ParseSet(name string, data []byte) ([]Object, error) {
	return parse(name, data, MaxSetSize, MaxSetDocuments)
}

func parse(filename string, data []byte, maxSize, maxDocs int) ([]Object, error) {
	d := decoder{file: filename}
	if len(data) > maxSize {
		d.errs = append(d.errs, &Error{File: filename, Msg: fmt.Sprintf("file is larger than %d bytes", maxSize)})
		return nil, d.errs.Err()
	}
	var objs []Object
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.errs = append(d.errs, syntaxError(filename, err))
			break
		}
		n := doc.Content[0]
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Value == "" {
			continue // an empty document, such as one after a final "---"
		}
		if len(objs) == maxDocs {
			d.errs = append(d.errs, &Error{File: filename, Line: n.Line, Msg: fmt.Sprintf("more than %d documents", maxDocs)})
			break
		}
		o := d.object(n)
		if o.Spec != nil {
			o.Spec.setDefaults()
		}
		objs = append(objs, o)
	}
	check(objs, &d.errs, false)
	if err := d.errs.Err(); err != nil {
		return nil, err
	}
	return objs, nil
}

// syntaxError locates an error of the YAML parser ("yaml: line 3: ...").
func syntaxError(file string, err error) *Error {
	e := &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if rest, ok := strings.CutPrefix(e.Msg, "line "); ok {
		if num, msg, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				e.Line, e.Msg = line, msg
			}
		}
	}
	if parserProblems[e.Msg] {
		// yaml numbers the lines of its parser's errors from 0, leaving
		// out line 0, and those of its scanner's from 1.
		e.Line++
	}
	return e
}

var parserProblems = map[string]bool{
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"found undefined tag handle":             true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"found incompatible YAML document":       true,
}

// decoder maps YAML nodes onto Go values strictly, recording in the current
// object's Origin the line of every field it meets and the fields it could
// not decode.
type decoder struct {
	file   string
	origin *Origin
	errs   ErrorList
}

// object decodes one document. The spec of an unknown kind is left nil.
func (d *decoder) object(n *yaml.Node) Object {
	o := Object{Origin: Origin{File: d.file, Line: n.Line, lines: map[string]int{}, failed: map[string]bool{}}}
	d.origin = &o.Origin
	if n.Kind == yaml.MappingNode {
		// The kind decides the type of the spec: look it up first.
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; k.Value == "kind" && v.Kind == yaml.ScalarNode {
				if newSpec := kinds[v.Value]; newSpec != nil {
					o.Spec = newSpec()
				}
			}
		}
	}
	d.decode(n, "", reflect.ValueOf(&o).Elem())
	return o
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// fail reports that the field at path could not be decoded, so that
// validation does not report it again as missing or invalid.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errorf(n, path, format, args...)
	d.origin.failed[path] = true
}

// decode sets v from n. Structs take their field names from yaml tags.
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		d.fail(n, path, "aliases are not supported")
		return
	}
	switch v.Kind() {
	case reflect.Interface: // Object.Spec, set by object for a known kind
		if !v.IsNil() {
			d.decode(n, path, v.Elem().Elem())
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		fields, known := fieldsOf(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
				d.errorf(k, path, "field names must be strings, got %s", describe(k))
				continue
			}
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if line, dup := d.origin.lines[p]; dup {
				d.errorf(k, p, "duplicate field (first at line %d)", line)
				continue
			}
			d.origin.lines[p] = k.Line
			index, ok := fields[k.Value]
			if !ok {
				d.errorf(k, p, "unknown field (known: %s)", known)
				continue
			}
			d.decode(val, p, v.FieldByIndex(index))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			d.origin.lines[p] = item.Line
			d.decode(item, p, s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		// An unquoted time (a Ban's expires) is a string to Ward: the
		// field that holds it checks its format.
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!timestamp" {
			v.SetString(n.Value)
		} else if d.scalar(n, path, "!!str", "a string") {
			v.SetString(n.Value)
		}
	case reflect.Int:
		if d.scalar(n, path, "!!int", "an integer") {
			i, err := strconv.ParseInt(n.Value, 0, 64)
			if err != nil || v.OverflowInt(i) {
				d.fail(n, path, "integer %s out of range", n.Value)
				return
			}
			v.SetInt(i)
		}
	case reflect.Float64:
		tag := "!!float"
		if n.ShortTag() == "!!int" {
			tag = "!!int"
		}
		if d.scalar(n, path, tag, "a number") {
			f, err := strconv.ParseFloat(n.Value, 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				d.fail(n, path, "invalid number %s", n.Value)
				return
			}
			v.SetFloat(f)
		}
	case reflect.Bool:
		if d.scalar(n, path, "!!bool", "a boolean") {
			v.SetBool(strings.EqualFold(n.Value, "true"))
		}
	default:
		panic("resource: cannot decode into " + v.Type().String())
	}
}

// scalar reports whether n is a scalar with the given tag, and reports a
// problem when it is not.
func (d *decoder) scalar(n *yaml.Node, path, tag, want string) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != tag {
		d.fail(n, path, "expected %s, got %s", want, describe(n))
		return false
	}
	return true
}

// describe names what a node holds, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch tag := n.ShortTag(); tag {
	case "!!str":
		return fmt.Sprintf("a string (%q)", n.Value)
	case "!!int":
		return "an integer (" + n.Value + ")"
	case "!!float":
		return "a number (" + n.Value + ")"
	case "!!bool":
		return "a boolean (" + n.Value + ")"
	case "!!null":
		return "null"
	default:
		return "a value tagged " + tag
	}
}

// fieldsOf returns the indexes of the decodable fields of struct type t by
// YAML name, and the list of those names for messages. Fields tagged "-" are
// skipped.
func fieldsOf(t reflect.Type) (fields map[string][]int, known string) {
	fields = map[string][]int{}
	var names []string
	for _, f := range reflect.VisibleFields(t) {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" && f.IsExported() {
			fields[name] = f.Index
			names = append(names, name)
		}
	}
	return fields, strings.Join(names, ", ")
}
