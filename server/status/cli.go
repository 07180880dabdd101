package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
)

// DefaultServerURL is the URL of the server running on this host for the
// served tree at root: the port from its wwserver.toml, and the listen
// host when it is a specific address, else 127.0.0.1.
func DefaultServerURL(root string) (string, error) {
	srv, err := config.LoadServer(filepath.Join(root, config.ServerFile))
	if err != nil {
		return "", err
	}
	host, _, _ := net.SplitHostPort(srv.Listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return nodeapi.BaseURL(nodeapi.HostPort(host, srv.Port)), nil
}

// Fetch asks the server at baseURL (e.g. http://127.0.0.1:9873) for its
// status report. Bound its time with ctx.
func Fetch(ctx context.Context, client *http.Client, baseURL string) (*Report, error) {
	if client == nil {
		client = http.DefaultClient
	}
	u := strings.TrimRight(baseURL, "/") + nodeapi.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("bad server URL %q: %w", baseURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach wwserver at %s (is `wwserver serve` running? see --server): %w", baseURL, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("wwserver at %s answered %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	var rep Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, fmt.Errorf("bad status report from %s: %w", u, err)
	}
	return &rep, nil
}

// PruneRequest is the body of POST /status/prune (`wwserver status prune`).
type PruneRequest struct {
	Nodes   []string `json:"nodes"`   // node names or unknown MACs
	Removed bool     `json:"removed"` // every node no longer in nodes.toml
}

// PruneResponse is its answer: the names whose status was dropped.
type PruneResponse struct {
	Pruned []string `json:"pruned"`
}

// Prune asks the server at baseURL to drop the status of names (and, with
// removed, of every node no longer configured). The server accepts it from
// its own host only.
func Prune(ctx context.Context, client *http.Client, baseURL string, req PruneRequest) ([]string, error) {
	if client == nil {
		client = http.DefaultClient
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	u := strings.TrimRight(baseURL, "/") + nodeapi.StatusPrune
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("bad server URL %q: %w", baseURL, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("cannot reach wwserver at %s (is `wwserver serve` running? see --server): %w", baseURL, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("wwserver at %s answered %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	var pr PruneResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&pr); err != nil {
		return nil, fmt.Errorf("bad prune answer from %s: %w", u, err)
	}
	return pr.Pruned, nil
}

// unwrapURLError drops the `Get "URL":` prefix that repeats the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// ShowOptions drive Show, the body of `wwserver status`.
type ShowOptions struct {
	Server string   // base URL
	Names  []string // only these nodes/MACs (already expanded); nil shows all
	JSON   bool     // print the JSON report instead of the table
	Render RenderOptions
	// Watch repeats every Interval until ctx is done.
	Watch    bool
	Interval time.Duration
	// Clear homes the cursor and clears the screen before each watch frame.
	Clear   bool
	Timeout time.Duration // per request; 0 means 10 s
	Client  *http.Client
	Stderr  io.Writer // warnings; nil discards them
	// Power, when set, is asked for the power state of the listed nodes
	// (by name) after each fetch: the table's POWER column.
	Power func(ctx context.Context, nodes []string) map[string]string
}

// Show fetches the report, filters it and writes it to w; with Watch it
// refreshes until ctx is done (then it returns nil). The first fetch failing
// is an error; in watch mode later failures are shown and retried.
func Show(ctx context.Context, w io.Writer, o ShowOptions) error {
	if err := CheckSort(o.Render.Sort); err != nil {
		return err
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Watch && o.Interval <= 0 {
		return fmt.Errorf("watch interval must be positive, got %s", o.Interval)
	}
	var buf bytes.Buffer
	first := true
	for {
		buf.Reset()
		if o.Watch {
			if o.Clear {
				buf.WriteString(ANSIClearHome)
			}
			if !o.JSON { // keep --watch --json a plain stream of JSON documents
				fmt.Fprintf(&buf, "Every %s: %s    %s\n\n", o.Interval, o.Server, time.Now().Format(time.DateTime))
			}
		}
		err := showOnce(ctx, &buf, o, first)
		if err != nil {
			if o.Watch && ctx.Err() != nil {
				return nil // interrupted
			}
			if first || !o.Watch {
				return err
			}
			fmt.Fprintf(&buf, "error: %v\n", err)
		}
		first = false
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		if !o.Watch {
			return nil
		}
		t := time.NewTimer(o.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func showOnce(ctx context.Context, w io.Writer, o ShowOptions, warn bool) error {
	fctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	rep, err := Fetch(fctx, o.Client, o.Server)
	if err != nil {
		return err
	}
	if o.Names != nil {
		missing := rep.Filter(o.Names)
		if len(missing) == len(o.Names) {
			return fmt.Errorf("the server knows none of the given nodes (%s)", abbreviate(missing))
		}
		if warn && len(missing) > 0 {
			fmt.Fprintf(o.Stderr, "warning: no such node: %s\n", abbreviate(missing))
		}
	}
	if o.Power != nil && !o.JSON {
		names := make([]string, len(rep.Nodes))
		for i, n := range rep.Nodes {
			names[i] = n.Name
		}
		o.Render.Power = o.Power(ctx, names)
	}
	if o.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return Render(w, rep, o.Render)
}

// abbreviate joins names, eliding the middle of long lists.
func abbreviate(names []string) string {
	const keep = 10
	if len(names) <= keep {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, … (%d more)", strings.Join(names[:keep], ", "), len(names)-keep)
}
