// Package status keeps where each node is in its boot: the last stage, the
// file sent and when it was last seen. It is persisted under state/.
package status

import "time"

// Stages, in boot order. HEARTBEAT only refreshes last seen.
const (
	StageDHCP           = "DHCP"
	StageTFTP           = "TFTP"
	StageIPXE           = "IPXE"
	StageGRUB           = "GRUB" // a node's GRUB config (shim + GRUB boot), instead of IPXE
	StageKernel         = "KERNEL"
	StageImage          = "IMAGE"
	StageSystemOverlay  = "SYSTEM_OVERLAY"
	StageRuntimeOverlay = "RUNTIME_OVERLAY"
	StageHeartbeat      = "HEARTBEAT"
)

// Event is one thing a node (or unknown MAC) did.
type Event struct {
	MAC   string    // normalised, lower-case with colons; may be empty when only IP is known
	Node  string    // node name; empty for an unknown MAC
	IP    string    // source address when known
	Stage string    // one of the Stage constants
	Sent  string    // file sent, e.g. "__RUNTIME__.img.gz", or a refusal reason like "BAD_ASSET"
	Time  time.Time // zero means now
	// Progress, when set, is how far the node got with a download it makes
	// itself (the two-stage boot's image); any other event clears it.
	Progress *Progress
}

// Progress is a node's own report of a download: bytes done of total.
type Progress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// Percent is Done of Total in whole percent (0 with no total), never over
// 100; a download that is not finished never shows 100.
func (p *Progress) Percent() int64 {
	if p == nil || p.Total <= 0 || p.Done <= 0 {
		return 0
	}
	if p.Done >= p.Total {
		return 100
	}
	return min(p.Done*100/p.Total, 99) // Done < Total: no overflow for Total < 2^56
}

// Recorder receives events. Implementations must be cheap and never block on disk.
type Recorder interface {
	Record(Event)
}
