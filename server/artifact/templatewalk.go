package artifact

import "text/template/parse"

// inspectTemplate walks a parsed template tree depth first, like
// go/ast.Inspect: visit is called for each node, and the node's children
// (pipelines, command arguments, the branches of if, range and with) are
// walked only when it returns true. One walker for every question asked of
// a template (callsFile, imageFileArgs).
func inspectTemplate(root parse.Node, visit func(parse.Node) bool) {
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		if n == nil || !visit(n) {
			return
		}
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					walk(c)
				}
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.TemplateNode:
			walk(n.Pipe)
		}
	}
	walk(root)
}
