package artifact

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the Builder returns for one of these reasons
// matches it with errors.Is, so HTTP can map ErrNotFound to 404 and the rest
// to 500, while the message says what exactly is missing or wrong, e.g.
// `image "debian": no rootfs/boot/vmlinuz-*`.
var (
	// ErrNotFound: an image, kernel or overlay named by the node does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidName: an image or overlay name is not a plain name.
	ErrInvalidName = errors.New("invalid name")
	// ErrTemplate: an overlay template failed to parse or execute.
	ErrTemplate = errors.New("template error")
)

// kindError carries a readable message, the sentinel it matches and an
// optional underlying cause.
type kindError struct {
	kind error
	msg  string
	err  error
}

func (e *kindError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *kindError) Is(target error) bool { return target == e.kind }
func (e *kindError) Unwrap() error        { return e.err }

func notFound(format string, a ...any) error {
	return &kindError{kind: ErrNotFound, msg: fmt.Sprintf(format, a...)}
}

func templateError(err error, format string, a ...any) error {
	return &kindError{kind: ErrTemplate, msg: fmt.Sprintf(format, a...), err: err}
}

// checkName accepts the plain names config accepts: 1-63 letters, digits,
// '-', '_' and '.', not "." or "..". It keeps names from walking out of
// images/ or overlays/.
func checkName(what, s string) error {
	ok := s != "" && len(s) <= 63 && s != "." && s != ".."
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			ok = false
			break
		}
	}
	if !ok {
		return &kindError{kind: ErrInvalidName, msg: fmt.Sprintf("%s name %q is not a plain name (1-63 letters, digits, '-', '_', '.')", what, s)}
	}
	return nil
}
