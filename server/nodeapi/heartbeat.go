package nodeapi

// HeartbeatMessage is the JSON body wwclient posts to Heartbeat:
// {"node","version","uptime_seconds","boot_id","runtime_etag"}.
type HeartbeatMessage struct {
	// Node is the name the node believes it has; the server's config is
	// the truth (it only logs a mismatch).
	Node string `json:"node"`
	AgentState
}

// AgentState is what a heartbeat tells about the running node; the server
// keeps it as the node's last heartbeat (/status "heartbeat").
type AgentState struct {
	Version       string `json:"version"`        // wwclient's
	UptimeSeconds int64  `json:"uptime_seconds"` // the node's, from /proc/uptime
	BootID        string `json:"boot_id"`        // /proc/sys/kernel/random/boot_id
	RuntimeETag   string `json:"runtime_etag"`   // of the runtime overlay applied last
}
