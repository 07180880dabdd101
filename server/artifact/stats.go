package artifact

import (
	"fmt"
	"time"
)

// String is the one-line summary `wwserver build` prints.
func (st Stats) String() string {
	return fmt.Sprintf("built %d node(s) in %s: %d file(s) written (%s), %d reused, %d per-node part(s) checked, %d failed",
		st.Nodes, st.Elapsed.Round(time.Millisecond), st.Built, humanBytes(st.BytesWritten), st.Reused, st.Checked, st.Failed)
}

// humanBytes is n in binary units with one decimal (1.5 MiB), bytes below 1 KiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
