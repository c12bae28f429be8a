package policy

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
)

// Limits on conditions.
const (
	maxConditionSize   = 4096   // characters
	conditionCostLimit = 10_000 // CEL cost units per evaluation
)

// request and peer are what conditions see as the variables of the same
// names (see the package documentation).
type request struct {
	Method  string            `cel:"method"`
	Path    string            `cel:"path"`
	Headers map[string]string `cel:"headers"`
}

type peer struct {
	ID          string `cel:"id"`
	TrustDomain string `cel:"trust_domain"`
	Path        string `cel:"path"`
}

var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[request](), reflect.TypeFor[peer](), ext.ParseStructTags(true)),
		cel.Variable("request", cel.ObjectType("policy.request")),
		cel.Variable("peer", cel.ObjectType("policy.peer")),
		cel.Variable("user", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
		cel.ParserExpressionSizeLimit(maxConditionSize),
	)
})

// condition is a compiled CEL expression.
type condition struct {
	prg cel.Program
}

func compileCondition(src string) (*condition, error) {
	env, err := celEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		var msgs []string
		for _, e := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("%d:%d: %s", e.Location.Line(), e.Location.Column()+1, e.Message))
		}
		return nil, fmt.Errorf("invalid condition: %s", strings.Join(msgs, "; "))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsDyn() {
		return nil, fmt.Errorf("invalid condition: it is a %s, not a bool", t)
	}
	prg, err := env.Program(ast, cel.CostLimit(conditionCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("invalid condition: %w", err)
	}
	return &condition{prg}, nil
}

// eval evaluates the condition for a call; a value that is not a bool is an
// error.
func (c *condition) eval(x *call) (bool, error) {
	if x.vars == nil {
		x.vars = newActivation(x)
	}
	out, _, err := c.prg.Eval(x.vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("condition is a %s, not a bool", out.Type().TypeName())
	}
	return b, nil
}

// activation holds the variables of conditions for one call. It copies what
// it needs, so that a call does not escape to the heap when no condition
// runs.
type activation struct {
	request request
	peer    peer
	user    map[string]any
	header  http.Header // turned into request.Headers on first use
}

func newActivation(x *call) *activation {
	a := &activation{
		request: request{Method: x.method, Path: x.path},
		user:    x.req.Claims,
		header:  x.req.Header,
	}
	if id := x.req.Peer; !id.IsZero() {
		a.peer = peer{ID: id.String(), TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
	}
	if a.user == nil {
		a.user = map[string]any{}
	}
	return a
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "request":
		if a.request.Headers == nil {
			a.request.Headers = make(map[string]string, len(a.header))
			for k, vs := range a.header {
				a.request.Headers[strings.ToLower(k)] = strings.Join(vs, ", ")
			}
		}
		return &a.request, true
	case "peer":
		return &a.peer, true
	case "user":
		return a.user, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }
