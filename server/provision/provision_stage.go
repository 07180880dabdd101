package provision

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/wwcluster/ww/server/nodeapi"
)

// serveProvision is Warewulf's form of the stage routes,
// /provision/{mac}?stage=ipxe|kernel|image|system|runtime: it dispatches to
// the same handlers (so they record and count under their own stage).
func (h *Handler) serveProvision(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.badProvision(w, "bad query: "+err.Error())
		return
	}
	name := q.Get(nodeapi.StageParam)
	if name == "" {
		h.badProvision(w, "missing ?"+nodeapi.StageParam+"= (one of "+strings.Join(nodeapi.Stages(), ", ")+")")
		return
	}
	hd, ok := h.stages[name]
	if !ok {
		h.badProvision(w, "unknown stage "+strconv.Quote(name)+" (want one of "+strings.Join(nodeapi.Stages(), ", ")+")")
		return
	}
	hd.ServeHTTP(w, r)
}

func (h *Handler) badProvision(w http.ResponseWriter, msg string) {
	h.metrics.requests.WithLabelValues(labelProvision, "400").Inc()
	h.metrics.refusals.WithLabelValues(reasonBadRequest).Inc()
	http.Error(w, msg, http.StatusBadRequest)
}
