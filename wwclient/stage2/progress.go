package stage2

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/wwcluster/ww/server/nodeapi"
)

// Reasons a node reports when it gives up.
const (
	ReasonNoMemory    = nodeapi.ReasonNoMemory
	ReasonImageFailed = nodeapi.ReasonImageFailed
)

// Report is the body of POST /progress/{mac}.
type Report = nodeapi.ProgressMessage

// DefaultReportEvery is the least time between two progress posts.
const DefaultReportEvery = 3 * time.Second

// postTimeout bounds one progress post.
const postTimeout = 5 * time.Second

// Reporter posts the download progress to the server the fetch uses: at
// most every Every, and only when the whole percent changed. Posting never
// holds up the download (Update only records the latest value); a failed
// post is logged at debug and forgotten.
type Reporter struct {
	f        *Fetcher
	client   *http.Client // secure mode: a privileged source port
	assetKey string
	every    time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	latest  Report
	changed chan struct{}
}

// NewReporter posts through client (which may bind a privileged source
// port), with the asset key when set.
func (f *Fetcher) NewReporter(client *http.Client, assetKey string, every time.Duration) *Reporter {
	if every <= 0 {
		every = DefaultReportEvery
	}
	if client == nil {
		client = f.o.Client
	}
	return &Reporter{f: f, client: client, assetKey: assetKey, every: every, log: f.o.Log, changed: make(chan struct{}, 1)}
}

// Update records the latest progress (cheap, never blocks).
func (r *Reporter) Update(done, total int64) {
	r.mu.Lock()
	r.latest = Report{Done: done, Total: total}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func percent(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return done * 100 / total
}

// Run posts updates until ctx ends; a post under way is finished first
// (it has its own timeout).
func (r *Reporter) Run(ctx context.Context) {
	sent := int64(-1)
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
		}
		if wait := r.every - time.Since(last); !last.IsZero() && wait > 0 {
			t := time.NewTimer(wait) // rate limit, not synchronisation
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.mu.Lock()
		rep := r.latest
		r.mu.Unlock()
		if p := percent(rep.Done, rep.Total); p != sent {
			// Not cancelled with ctx: when Run returns, the server has
			// handled every post it made, so a Final post comes after.
			if err := r.post(context.WithoutCancel(ctx), rep); err != nil {
				r.log.Debug("progress post", "err", err)
			}
			sent, last = p, time.Now()
		}
	}
}

// Final posts rep now (the end of the download, or why it failed).
func (r *Reporter) Final(ctx context.Context, rep Report) error {
	return r.post(ctx, rep)
}

func (r *Reporter) post(ctx context.Context, rep Report) error {
	ctx, cancel := context.WithTimeout(ctx, postTimeout)
	defer cancel()
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	u := nodeapi.Progress.URL(r.f.base(int(r.f.current.Load())), url.PathEscape(r.f.o.MAC))
	if r.assetKey != "" {
		u += "?" + nodeapi.AssetKeyParam + "=" + url.QueryEscape(r.assetKey)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
