package nodeapi

// The two-stage boot (nodes.toml boot = "twostage"): the boot loader loads
// the kernel, its network drivers (Modules) and the overlays; wwclient as
// /init fetches the image index (ImageIndex, whose sha256 is ArgImage=),
// every chunk it lists (ChunkURL) and reports its progress (Progress). See
// package chunkimage for the index and chunk format.
const (
	Modules    Route = "/modules/"  // GET: the node kernel's network drivers, gzip newc cpio
	ImageIndex Route = "/index/"    // GET: the node's image index (JSON)
	Progress   Route = "/progress/" // POST: wwclient's ProgressMessage
)

// Chunk is followed by a chunk's sha256 (64 lower-case hex digits): GET
// one zstd chunk of any image the server built (ETag = the digest,
// immutable, Range).
const Chunk = "/chunk/"

// ChunkWildcard is the name of the digest in Chunk's server-side pattern.
const ChunkWildcard = "sha256"

// ChunkURL is the URL of chunk digest at the server whose base URL is base.
func ChunkURL(base, digest string) string { return base + Chunk + digest }

// ChunkPattern is Chunk's net/http ServeMux pattern for GET.
func ChunkPattern() string { return "GET " + Chunk + "{" + ChunkWildcard + "}" }

// ArgImage (two-stage boot) is the sha256 of the image index, 64
// lower-case hex digits.
const ArgImage = "wwimage"

// ArgTmpfsSize is the size of the node's tmpfs root, as tmpfs' size=
// option: bytes with an optional k, m or g suffix, or N% of the RAM
// (default: the kernel's, half the RAM). Set it in kernel_args
// ("wwtmpfs_size=90%") for an image larger than half the node's memory.
const ArgTmpfsSize = "wwtmpfs_size"

// ProgressMessage is the JSON body wwclient posts to Progress while it
// fetches the image: {"done","total"[,"error","message"]}.
type ProgressMessage struct {
	Done  int64 `json:"done"`  // uncompressed image bytes unpacked so far
	Total int64 `json:"total"` // the image's uncompressed size
	// Error, when set, says the node gave up: ReasonNoMemory or
	// ReasonImageFailed; Message is its console line.
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

// Reasons a node reports in ProgressMessage.Error (status records them as
// sent).
const (
	ReasonNoMemory    = "NO_MEMORY"    // the image does not fit the node's memory
	ReasonImageFailed = "IMAGE_FAILED" // the download failed for good
)
