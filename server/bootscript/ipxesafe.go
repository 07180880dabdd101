package bootscript

import (
	"fmt"
	"reflect"
	"strings"
	"text/template/parse"
)

// ipxeSafeFunc is the function guardActions appends to every action.
const ipxeSafeFunc = "ww_ipxe_safe"

// guardActions makes every value a template prints pass through ipxeSafe,
// as html/template adds its escapers: each {{…}} that prints (not a
// {{$x := …}}) gets "| ww_ipxe_safe" appended to its pipeline. Defence in
// depth: config validation already refuses such kernel_args, but a value
// from anywhere else (a tag a custom template prints, a node edited around
// the validator) must not become iPXE commands either.
func guardActions(tree *parse.Tree, n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			guardActions(tree, c)
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 {
			return // an assignment prints nothing
		}
		ident := parse.NewIdentifier(ipxeSafeFunc).SetTree(tree).SetPos(n.Pos)
		n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: n.Pos, Args: []parse.Node{ident}})
	case *parse.IfNode:
		guardActions(tree, n.List)
		guardActions(tree, n.ElseList)
	case *parse.RangeNode:
		guardActions(tree, n.List)
		guardActions(tree, n.ElseList)
	case *parse.WithNode:
		guardActions(tree, n.List)
		guardActions(tree, n.ElseList)
	}
}

// ipxeSafe returns v as text/template would print it, or an error (which
// fails the whole render: no half-written script is sent) when iPXE would
// read the text as more than a value: a control character (a newline starts
// a new command), "${" (a setting expansion, anywhere in a line), or a
// token "||", "&&", ";" or one starting with "#" (iPXE splits a line at
// whitespace and has no quoting). See config.CheckKernelArg.
func ipxeSafe(v reflect.Value) (string, error) {
	s := printed(v)
	for i, r := range s {
		if r < ' ' || r == 0x7f {
			return "", fmt.Errorf("value %q holds a control character (%U at byte %d), which would end the iPXE command", s, r, i)
		}
	}
	if strings.Contains(s, "${") {
		return "", fmt.Errorf("value %q holds \"${\", which iPXE would expand as a setting", s)
	}
	for _, tok := range strings.Fields(s) {
		if tok == "||" || tok == "&&" || tok == ";" || strings.HasPrefix(tok, "#") {
			return "", fmt.Errorf("value %q holds the token %q, which iPXE reads as a command separator or comment", s, tok)
		}
	}
	return s, nil
}

// printed is v as text/template prints an action's value (its
// printableValue): pointers followed, "<no value>" for nothing.
func printed(v reflect.Value) string {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			break
		}
		if v.Type().Implements(errorType) || v.Type().Implements(stringerType) {
			break
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		return "<no value>"
	}
	if v.CanAddr() && !v.Type().Implements(errorType) && !v.Type().Implements(stringerType) {
		if pt := reflect.PointerTo(v.Type()); pt.Implements(errorType) || pt.Implements(stringerType) {
			v = v.Addr()
		}
	}
	return fmt.Sprint(v.Interface())
}

var (
	errorType    = reflect.TypeFor[error]()
	stringerType = reflect.TypeFor[fmt.Stringer]()
)
