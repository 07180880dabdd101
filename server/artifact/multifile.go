package artifact

import (
	"bytes"
	"fmt"
	"path"
	"strings"
	"text/template/parse"

	"github.com/cavaliergopher/cpio"
)

// A template may write several files: {{file "NAME"}} starts a file NAME
// next to the template's own output path (Warewulf's overlays do the same),
// e.g. one NetworkManager keyfile per device. The file function returns a
// marker that the output is split at after rendering.
const fileMarker = "\x00wwfile\x00"

// templateFile is the template function "file".
func templateFile(name string) (string, error) {
	if name == "" || len(name) > 255 || name == "." || name == ".." ||
		strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("file %q: want a plain file name (written next to the template)", name)
	}
	return fileMarker + name + "\x00", nil
}

// renderedFile is one file of a template's output.
type renderedFile struct {
	name string // output path
	data []byte
}

// splitFiles cuts the output of a template that calls file at its
// markers. What comes before the first marker is the template's own file,
// left out when it is only white space; a template that starts no file at
// all writes nothing (e.g. a stack the node does not use).
func splitFiles(out string, own []byte) []renderedFile {
	dir := path.Dir(out)
	parts := bytes.Split(own, []byte(fileMarker))
	var files []renderedFile
	if lead := parts[0]; len(bytes.TrimSpace(lead)) > 0 {
		files = append(files, renderedFile{out, lead})
	}
	for _, p := range parts[1:] {
		name, data, ok := bytes.Cut(p, []byte{0})
		if !ok {
			continue // cannot happen: templateFile ends the name with NUL
		}
		files = append(files, renderedFile{path.Join(dir, string(name)), data})
	}
	return files
}

// outputFiles is what template e with output out writes.
func outputFiles(pt *parsedTemplate, e *mergedEntry, out []byte) []renderedFile {
	if pt == nil || !pt.multiFile {
		return []renderedFile{{e.out, out}}
	}
	return splitFiles(e.out, out)
}

// writeRendered writes a template's files with the template's mode and owner.
func writeRendered(cw *cpio.Writer, pt *parsedTemplate, e *mergedEntry, out []byte) error {
	for _, f := range outputFiles(pt, e, out) {
		if err := writeData(cw, &e.entry, f.name, f.data); err != nil {
			return err
		}
	}
	return nil
}

// callsFile reports whether a parsed template calls the file function.
func callsFile(root parse.Node) bool {
	found := false
	inspectTemplate(root, func(n parse.Node) bool {
		if id, ok := n.(*parse.IdentifierNode); ok && id.Ident == "file" {
			found = true
		}
		return !found
	})
	return found
}
