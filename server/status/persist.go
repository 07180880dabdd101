package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/wwcluster/ww/server/atomicfile"
)

// Table is the status as persisted: node name → record, and unknown MAC
// (or IP) → record. The in-memory Store hands a copy to its Persister.
type Table struct {
	Nodes   map[string]Record
	Unknown map[string]Record
}

// Persister is where the status table survives restarts. Store calls Load
// once when opened and Save from its flush loop (never concurrently). The
// files backend is FileBackend; another backend (etcd) implements the same
// two methods.
type Persister interface {
	// Load returns the saved table; an empty one when nothing was saved.
	Load() (Table, error)
	// Save replaces the saved table with t.
	Save(t Table) error
}

// fileData is the on-disk form of status.json.
type fileData struct {
	Version int               `json:"version"`
	Nodes   map[string]Record `json:"nodes"`
	Unknown map[string]Record `json:"unknown"`
}

// FileBackend keeps the table in one JSON file (state/status.json),
// replaced atomically on every save. A corrupt file is moved aside
// (PATH.corrupt-TIMESTAMP) and logged, and the store starts empty.
type FileBackend struct {
	Path string
	Log  *slog.Logger
	now  func() time.Time
}

// Load implements Persister.
func (f *FileBackend) Load() (Table, error) {
	empty := Table{Nodes: map[string]Record{}, Unknown: map[string]Record{}}
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return empty, nil
	}
	if err != nil {
		return empty, fmt.Errorf("read node status: %w", err)
	}
	fd, err := decodeFile(data)
	if err != nil {
		now := time.Now
		if f.now != nil {
			now = f.now
		}
		log := f.Log
		if log == nil {
			log = slog.Default()
		}
		aside := fmt.Sprintf("%s.corrupt-%s", f.Path, now().UTC().Format("20060102T150405.000000000"))
		if rerr := os.Rename(f.Path, aside); rerr != nil {
			log.Error("node status file is corrupt and could not be moved aside; starting empty",
				"file", f.Path, "err", err, "rename_err", rerr)
		} else {
			log.Error("node status file is corrupt; moved aside, starting empty",
				"file", f.Path, "moved_to", aside, "err", err)
		}
		return empty, nil
	}
	if fd.Nodes != nil {
		empty.Nodes = fd.Nodes
	}
	if fd.Unknown != nil {
		empty.Unknown = fd.Unknown
	}
	return empty, nil
}

// Save implements Persister.
func (f *FileBackend) Save(t Table) error {
	fd := fileData{Version: fileVersion, Nodes: t.Nodes, Unknown: t.Unknown}
	err := atomicfile.Write(f.Path, 0o644, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		return enc.Encode(&fd)
	})
	if err != nil {
		return fmt.Errorf("save node status: %w", err)
	}
	return nil
}

func decodeFile(data []byte) (*fileData, error) {
	var fd fileData
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fd); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON object")
	}
	if fd.Version != fileVersion {
		return nil, fmt.Errorf("unsupported status file version %d", fd.Version)
	}
	return &fd, nil
}
