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
}

// Recorder receives events. Implementations must be cheap and never block on disk.
type Recorder interface {
	Record(Event)
}
