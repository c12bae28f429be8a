package resource

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a resource, located by file, line and field path
// (such as "spec.rules[0].methods[1]").
type Error struct {
	File string
	Line int // 0 when unknown
	Path string
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	var parts []string
	for _, s := range []string{loc, e.Path, e.Msg} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ": ")
}

// ErrorList is every problem found in a set of documents, one per line of its
// message. Functions of this package return it through Err, so errors.As
// finds both the list and its elements.
type ErrorList []*Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the errors of the list.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Err returns nil for an empty list, otherwise the list sorted by file and
// line (problems on one line keep their order).
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	l = slices.Clone(l)
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	return l
}

// AsList returns err's problems as a list: the list err carries, or err
// itself as a problem without a location.
func AsList(err error) ErrorList {
	var l ErrorList
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &l):
		return l
	case errors.As(err, &e):
		return ErrorList{e}
	}
	return ErrorList{{Msg: err.Error()}}
}

// Origin says where an object was read: the file, the line where its document
// starts, and the line of each field that was present.
type Origin struct {
	File   string
	Line   int
	lines  map[string]int  // field path -> line
	failed map[string]bool // fields that could not be decoded
}

// LineOf returns the line of the field at path ("spec.rules[0].when"). For a
// field that was not in the document, it returns the line of the closest
// enclosing field that was, and at worst the document's.
func (o Origin) LineOf(path string) int {
	for path != "" {
		if l, ok := o.lines[path]; ok {
			return l
		}
		path = parent(path)
	}
	return o.Line
}

// decoded reports whether the field at path and those enclosing it were
// decoded without problems.
func (o Origin) decoded(path string) bool {
	for ; path != ""; path = parent(path) {
		if o.failed[path] {
			return false
		}
	}
	return !o.failed[""]
}

// parent returns the path of the field enclosing the one at path.
func parent(path string) string {
	return path[:max(strings.LastIndexAny(path, ".["), 0)]
}

// Errorf returns a problem with the field at path.
func (o Origin) Errorf(path, format string, args ...any) *Error {
	return &Error{File: o.File, Line: o.LineOf(path), Path: path, Msg: fmt.Sprintf(format, args...)}
}

// at formats where the field at path was read, for messages that point at a
// second place.
func (o Origin) at(path string) string {
	return (&Error{File: o.File, Line: o.LineOf(path)}).Error()
}
