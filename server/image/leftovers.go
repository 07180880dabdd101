package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ownerFile in an .import-* directory records the importing process
// ("PID STARTTIME"), so a leftover can be told from an import running.
const ownerFile = "owner"

func writeOwner(work string) error {
	start, _ := procStart(os.Getpid())
	return os.WriteFile(filepath.Join(work, ownerFile), fmt.Appendf(nil, "%d %d\n", os.Getpid(), start), 0o600)
}

// procStart is a process's start time (clock ticks after boot, field 22
// of /proc/PID/stat), which tells a reused PID from its first owner.
func procStart(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("unexpected /proc stat format")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// ownerAlive reads an .import-* directory's owner: its PID (0 when none
// is recorded) and whether that process still runs.
func ownerAlive(work string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(work, ownerFile))
	if err != nil {
		return 0, false
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscan(string(data), &pid, &start); err != nil || pid <= 0 {
		return 0, false
	}
	now, err := procStart(pid)
	return pid, err == nil && now == start
}

// Leftover is a temporary tree a killed import (images/NAME/.import-*)
// or delete (images/.NAME.deleted) left behind.
type Leftover struct {
	Path string // relative to the tree
	Pid  int    // the import that made it, 0 when unknown
}

func (l Leftover) String() string {
	who := "an image delete that was interrupted"
	if strings.Contains(l.Path, "/.import-") {
		who = "an image import that was killed"
		if l.Pid > 0 {
			who += fmt.Sprintf(" (pid %d is gone)", l.Pid)
		}
	}
	return fmt.Sprintf("%s: left by %s; removed at the next image import or serve start", l.Path, who)
}

// Leftovers lists temporary trees whose import or delete is no longer
// running. It reads only: no lock is taken.
func Leftovers(tree string) ([]Leftover, error) {
	var out []Leftover
	imgs := filepath.Join(tree, "images")
	ents, err := os.ReadDir(imgs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".deleted") {
			out = append(out, Leftover{Path: filepath.Join("images", e.Name())})
			continue
		}
		works, _ := filepath.Glob(filepath.Join(imgs, e.Name(), ".import-*"))
		for _, w := range works {
			pid, alive := ownerAlive(w)
			if !alive {
				out = append(out, Leftover{Path: filepath.Join("images", e.Name(), filepath.Base(w)), Pid: pid})
			}
		}
	}
	return out, nil
}

// CleanLeftovers removes the temporary trees of killed imports and
// deletes (of every image whose lock is free: an import holds it as long
// as its tree exists) and the directories failed imports of new names
// left. It returns what it removed, relative to the tree.
func CleanLeftovers(tree string) ([]string, error) {
	imgs := filepath.Join(tree, "images")
	ents, err := os.ReadDir(imgs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(imgs, e.Name())
		deleted := strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".deleted")
		works, _ := filepath.Glob(filepath.Join(dir, ".import-*"))
		onlyLock := false
		if !deleted && len(works) == 0 {
			names, _ := os.ReadDir(dir)
			onlyLock = len(names) == 1 && names[0].Name() == lockFile
		}
		if !deleted && len(works) == 0 && !onlyLock {
			continue // nothing to clean: its lock is not even tried
		}
		if deleted {
			if _, err := os.Stat(filepath.Join(dir, lockFile)); err != nil {
				continue // a delete that got as far as its lock file finishes (or is finished at the next delete)
			}
		}
		lock, err := lockImage(dir, false)
		if err != nil {
			continue // in use: an import or exec runs
		}
		switch {
		case deleted:
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, filepath.Join("images", e.Name()))
			}
		case onlyLock:
			removeIfEmptyImage(dir)
		default:
			for _, w := range works {
				if err := os.RemoveAll(w); err != nil {
					errs = append(errs, err)
				} else {
					removed = append(removed, filepath.Join("images", e.Name(), filepath.Base(w)))
				}
			}
		}
		lock.Close()
	}
	return removed, errors.Join(errs...)
}

// removeImportDirs removes dir's .import-* trees; the caller holds the lock.
func removeImportDirs(dir string) {
	works, _ := filepath.Glob(filepath.Join(dir, ".import-*"))
	for _, w := range works {
		_ = os.RemoveAll(w)
	}
}
