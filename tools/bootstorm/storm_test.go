package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/tools/internal/gen"
)

// built holds the binaries TestStorm20 builds once per test process (so
// that -count=N does not rebuild them N times).
var built struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

func buildOnce(t *testing.T) map[string]string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "bootstorm-test-"); built.err != nil {
			return
		}
		for _, name := range []string{"wwserver", "wwclient", "bootstorm"} {
			pkg := map[string]string{"wwserver": "./server/cmd/wwserver", "wwclient": "./wwclient", "bootstorm": "./tools/bootstorm"}[name]
			cmd := exec.Command("go", "build", "-o", filepath.Join(built.dir, name), pkg)
			cmd.Dir = "../.."
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if built.out, built.err = cmd.CombinedOutput(); built.err != nil {
				return
			}
		}
	})
	if built.err != nil {
		t.Fatalf("go build: %v\n%s", built.err, built.out)
	}
	return map[string]string{"wwserver": filepath.Join(built.dir, "wwserver"), "wwclient": filepath.Join(built.dir, "wwclient"),
		"bootstorm": filepath.Join(built.dir, "bootstorm")}
}

// TestStorm20 is the real thing at small scale: bootstorm storm with 20
// nodes against a real wwserver (DHCP, TFTP of Debian's undionly.kpxe,
// HTTP) in namespaces it creates, then HTTP-only against wwserver and
// against nginx serving the mirrored files. Needs root, iproute2, ipxe and
// nginx (make deps installs them).
func TestStorm20(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	const ipxeBin = "/usr/lib/ipxe/undionly.kpxe"
	var missing []string
	for _, tool := range []string{"ip", "nginx", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat(ipxeBin); err != nil {
		missing = append(missing, ipxeBin)
	}
	if len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("missing %v (make deps)", missing)
		}
		t.Skipf("missing %v (make deps)", missing)
	}
	st, err := os.Stat(ipxeBin)
	if err != nil {
		t.Fatal(err)
	}
	nginx, _ := exec.LookPath("nginx")

	dir := t.TempDir()
	bin := buildOnce(t)
	image := filepath.Join(dir, "rootfs")
	if err := gen.WriteFakeImage(image, 1); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	if out, err := exec.Command(bin["wwserver"], "init", tree, "--wwclient", bin["wwclient"], "--image-from", image,
		"--address", "10.100.0.1", "--listen", ":9873").CombinedOutput(); err != nil {
		t.Fatalf("wwserver init: %v\n%s", err, out)
	}
	const n = 20
	// Two-stage, as nodes boot by default: wwclient fetches the chunks.
	if err := gen.WriteNodesFileBoot(tree, n, config.BootTwoStage); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reportPath := filepath.Join(dir, "storm.json")
	cmd := exec.CommandContext(ctx, bin["bootstorm"], "storm", "-root", tree, "-wwserver", bin["wwserver"], "-nginx", nginx,
		"-n", strconv.Itoa(n), "-poll-interval", "500ms", "-poll-for", "1200ms", "-timeout", "2m", "-dhcp-timeout", "2s",
		"-out", filepath.Join(dir, "out"), "-json", reportPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bootstorm: %v\n%s\n%s", err, stderr.String(), out)
	}
	if !strings.Contains(string(out), "| wwserver full | 20 | 20 | 0 |") {
		t.Errorf("table lacks the full run with 20 booted, 0 failed:\n%s", out)
	}
	// Its namespaces are gone.
	if ls, err := exec.Command("ip", "netns", "list").Output(); err == nil &&
		strings.Contains(string(ls), "wwstorm-"+strconv.Itoa(cmd.Process.Pid)+"-") {
		t.Errorf("namespaces left behind:\n%s", ls)
	}

	b, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatal(err)
	}
	var reps []Report
	if err := json.Unmarshal(b, &reps); err != nil {
		t.Fatal(err)
	}
	if len(reps) != 4 {
		t.Fatalf("%d reports, want 4 (full, http, nginx, raw)", len(reps))
	}
	for _, r := range reps {
		name := r.Target + "/" + r.Mode
		if r.Nodes != n || r.Booted != n || r.FailedNodes != 0 {
			t.Errorf("%s: nodes %d booted %d failed %d, want %d/%d/0", name, r.Nodes, r.Booted, r.FailedNodes, n, n)
		}
		// The raw run of a 1 MiB image is over before nginx uses a clock tick.
		if r.AllBootedSeconds <= 0 || (r.ServerCPUSeconds <= 0 && r.Mode != modeRaw) || r.ServerPeakRSS < 1<<20 {
			t.Errorf("%s: all booted %vs, server CPU %vs, peak RSS %d: want all > 0", name, r.AllBootedSeconds, r.ServerCPUSeconds, r.ServerPeakRSS)
		}
		stages := map[string]StageReport{}
		for _, s := range r.Stages {
			stages[s.Stage] = s
			if s.Failed != 0 {
				t.Errorf("%s: stage %s failed %d times: %v", name, s.Stage, s.Failed, s.Failures)
			}
		}
		if r.Mode == modeRaw {
			if stages[stageRaw].OK != n || stages[stageBoot].OK != n {
				t.Errorf("%s: raw %d boot %d, want %d", name, stages[stageRaw].OK, stages[stageBoot].OK, n)
			}
			continue
		}
		want := []string{stageScript, stageKernel, stageModules, stageSystem, stageIndex, stageImage, stageProgress, stageBoot}
		if r.Mode == modeFull {
			want = append(want, stageDHCPPXE, stageTFTP, stageDHCPIPXE)
		}
		for _, s := range want {
			if stages[s].OK != n {
				t.Errorf("%s: stage %s ok %d, want %d", name, s, stages[s].OK, n)
			}
		}
		// Secure mode: the runtime overlay comes from wwclient, not iPXE; at
		// least the first sync plus one poll per node.
		if stages[stageRuntime].OK < 2*n || stages[stageHeartbeat].OK < 2*n || stages[stageRuntimeBoot].OK != 0 {
			t.Errorf("%s: runtime %d heartbeat %d runtime-ipxe %d, want >= %d, >= %d, 0", name,
				stages[stageRuntime].OK, stages[stageHeartbeat].OK, stages[stageRuntimeBoot].OK, 2*n, 2*n)
		}
		if r.Mode == modeFull && stages[stageTFTP].Bytes != n*st.Size() {
			t.Errorf("%s: TFTP bytes %d, want %d x %d", name, stages[stageTFTP].Bytes, n, st.Size())
		}
		if kb := stages[stageKernel].Bytes; kb != n<<20 {
			t.Errorf("%s: kernel bytes %d, want %d (20 x 1 MiB)", name, kb, n<<20)
		}
	}
	// The same files, byte for byte, from both servers; raw mode reads
	// the chunks' bytes as one file.
	if reps[1].BytesTotal != reps[2].BytesTotal {
		t.Errorf("wwserver served %d bytes over HTTP, nginx %d: want the same", reps[1].BytesTotal, reps[2].BytesTotal)
	}
	chunks, raw := stageReport(&reps[1], stageImage), stageReport(&reps[3], stageRaw)
	if chunks == nil || raw == nil || chunks.Bytes == 0 || chunks.Bytes != raw.Bytes {
		t.Errorf("chunk bytes %+v, raw bytes %+v: want the same, > 0", chunks, raw)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}
