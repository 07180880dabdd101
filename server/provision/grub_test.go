package provision

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/status"
)

// TestGRUBRoute: GET /grub/{mac} is the node's GRUB config with its files
// via HTTP, recorded as the GRUB stage; an unknown MAC gets a config that
// says so and reboots, recorded as an unknown MAC.
func TestGRUBRoute(t *testing.T) {
	e := newEnv(t, true)
	resp, body := e.get("/grub/52-54-00-00-00-02")
	wantCode(t, resp, body, http.StatusOK)
	for _, want := range []string{
		"linux '(http,10.0.2.1:9873)/kernel/" + macN002 + "' 'wwid=" + macN002 + "'",
		"initrd '(http,10.0.2.1:9873)/image/" + macN002 + "' '(http,10.0.2.1:9873)/overlay/system/" + macN002 + "';",
		"boot",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GRUB config lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(string(body), "/overlay/runtime/") {
		t.Errorf("secure mode: the GRUB config fetches the runtime overlay:\n%s", body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("headers %v", resp.Header)
	}
	ev := e.status.last(t)
	if ev.Node != "n002" || ev.MAC != macN002 || ev.Stage != status.StageGRUB || ev.Sent != "grub" {
		t.Errorf("event = %+v", ev)
	}

	resp, body = e.get("/grub/" + macNone)
	wantCode(t, resp, body, http.StatusOK)
	if !strings.Contains(string(body), "not a known node") || !strings.Contains(string(body), macNone) || !strings.Contains(string(body), "reboot") {
		t.Errorf("unknown-node config:\n%s", body)
	}
	ev = e.status.last(t)
	if ev.Node != "" || ev.MAC != macNone || ev.Stage != status.StageGRUB || ev.Sent != ReasonNotFound {
		t.Errorf("unknown MAC event = %+v", ev)
	}

	resp, body = e.get("/grub/not-a-mac")
	wantCode(t, resp, body, http.StatusBadRequest)

	// GRUB loaded over HTTP (UEFI HTTP boot) reads /grub/grub.cfg first.
	resp, body = e.get("/grub/grub.cfg")
	wantCode(t, resp, body, http.StatusOK)
	if !strings.Contains(string(body), `configfile "(http,10.0.2.1:9873)/grub/${net_default_mac}"`) {
		t.Errorf("bootstrap config:\n%s", body)
	}
}

// readTFTP is what the TFTP server sends for name (ok false: not answered).
func readTFTP(t *testing.T, e *env, name string) (content string, sent func(), ok bool, err error) {
	t.Helper()
	f, ok, err := e.h.TFTPFile(context.Background(), name, "10.0.2.99")
	if !ok || err != nil {
		return "", nil, ok, err
	}
	defer f.Content.Close()
	data, rerr := io.ReadAll(f.Content)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if int64(len(data)) != f.Size {
		t.Errorf("%s: Size %d, content %d bytes", name, f.Size, len(data))
	}
	return string(data), f.Sent, true, nil
}

// TestTFTPFiles: the names Debian's signed GRUB (no http module) fetches
// over TFTP: the bootstrap config, the node's config with files via TFTP,
// and the node's files; each is recorded as its HTTP stage only once the
// transfer is complete (Sent).
func TestTFTPFiles(t *testing.T) {
	e := newEnv(t, true)
	cfg, sent, ok, err := readTFTP(t, e, "grub/grub.cfg")
	if !ok || err != nil || sent != nil || !strings.Contains(cfg, `configfile "(tftp,10.0.2.1)/grub/${net_default_mac}"`) {
		t.Fatalf("grub/grub.cfg: ok %v, err %v, sent %v:\n%s", ok, err, sent != nil, cfg)
	}

	cfg, sent, ok, err = readTFTP(t, e, "grub/"+macN002)
	if !ok || err != nil || sent == nil {
		t.Fatalf("grub/MAC: ok %v, err %v", ok, err)
	}
	if !strings.Contains(cfg, "linux '(tftp,10.0.2.1)/kernel/"+macN002+"'") {
		t.Errorf("node config does not load via TFTP:\n%s", cfg)
	}
	before := len(e.status.all())
	sent()
	if evs := e.status.all(); len(evs) != before+1 || evs[len(evs)-1].Stage != status.StageGRUB ||
		evs[len(evs)-1].Node != "n002" || evs[len(evs)-1].IP != "10.0.2.99" {
		t.Errorf("GRUB config transfer recorded as %+v", evs[before:])
	}

	for _, tc := range []struct{ name, stage, content, sentName string }{
		{"kernel/" + macN002, status.StageKernel, "kernel/n002:KERNEL", "vmlinuz-6.1.0-1-amd64"},
		{"image/52-54-00-00-00-02", status.StageImage, "image/n002:IMAGE", "__IMAGE__.img.gz"},
		{"overlay/system/" + macN002, status.StageSystemOverlay, "system/n002:SYSTEM", "__SYSTEM__.img.gz"},
	} {
		data, sent, ok, err := readTFTP(t, e, tc.name)
		if !ok || err != nil || !strings.HasPrefix(data, tc.content) {
			t.Errorf("%s: ok %v, err %v, content %q", tc.name, ok, err, data)
			continue
		}
		n := len(e.status.all())
		sent()
		ev := e.status.last(t)
		if len(e.status.all()) != n+1 || ev.Stage != tc.stage || ev.Sent != tc.sentName || ev.MAC != macN002 {
			t.Errorf("%s: recorded %+v", tc.name, ev)
		}
	}

	// Secure mode: the runtime overlay is never served to a boot loader,
	// and the refusal leaves the node's status alone (anyone can ask).
	n := len(e.status.all())
	if _, _, ok, err := readTFTP(t, e, "overlay/runtime/"+macN002); !ok || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runtime overlay in secure mode: ok %v, err %v", ok, err)
	}
	if evs := e.status.all(); len(evs) != n {
		t.Errorf("runtime overlay refusal recorded: %+v", evs[n:])
	}
	// An unknown MAC's file is not found (and recorded as unknown).
	if _, _, ok, err := readTFTP(t, e, "kernel/"+macNone); !ok || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unknown MAC's kernel: ok %v, err %v", ok, err)
	}
	if ev := e.status.last(t); ev.Node != "" || ev.MAC != macNone || ev.Sent != ReasonNotFound {
		t.Errorf("unknown MAC recorded as %+v", ev)
	}
	// A builder failure is an error that is not "not found".
	e.builder.set(func(f *fakeBuilder) { f.err = errBoom })
	if _, _, ok, err := readTFTP(t, e, "image/"+macN002); !ok || err == nil || errors.Is(err, fs.ErrNotExist) || !errors.Is(err, errBoom) {
		t.Errorf("builder failure: ok %v, err %v", ok, err)
	}
	e.builder.set(func(f *fakeBuilder) { f.err = errors.Join(ErrNotFound, errBoom) })
	if _, _, ok, err := readTFTP(t, e, "image/"+macN002); !ok || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing image: ok %v, err %v", ok, err)
	}
	// A MAC no network card has is not found and recorded nowhere.
	n = len(e.status.all())
	for _, name := range []string{"grub/ff:ff:ff:ff:ff:ff", "kernel/01:00:5e:00:00:01", "grub/00-00-00-00-00-00"} {
		if _, _, ok, err := readTFTP(t, e, name); !ok || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: ok %v, err %v", name, ok, err)
		}
	}
	if evs := e.status.all(); len(evs) != n {
		t.Errorf("non-unicast MACs recorded: %+v", evs[n:])
	}
	// Names that are not ours are left to the TFTP directory.
	for _, name := range []string{"snponly.efi", "grub/x86_64-efi/fs.lst", "kernel/xyz", "grubx64.efi"} {
		if _, _, ok, err := readTFTP(t, e, name); ok || err != nil {
			t.Errorf("%s: claimed (ok %v, err %v)", name, ok, err)
		}
	}
}

// TestTFTPRuntimeOverlayInsecure: outside secure mode a node without an
// asset key gets its runtime overlay over TFTP (its GRUB config names it);
// one with an asset key never does.
func TestTFTPRuntimeOverlayInsecure(t *testing.T) {
	e := newEnv(t, false)
	cfg, _, _, err := readTFTP(t, e, "grub/"+macN002)
	if err != nil || !strings.Contains(cfg, "'(tftp,10.0.2.1)/overlay/runtime/"+macN002+"'") {
		t.Errorf("insecure node config does not fetch the runtime overlay (err %v):\n%s", err, cfg)
	}
	if data, _, ok, err := readTFTP(t, e, "overlay/runtime/"+macN002); !ok || err != nil || !strings.HasPrefix(data, "runtime/n002") {
		t.Errorf("runtime overlay: ok %v, err %v, %q", ok, err, data)
	}
	n := len(e.status.all())
	if _, _, _, err := readTFTP(t, e, "overlay/runtime/"+macN001); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runtime overlay of a node with an asset key: %v", err)
	}
	if evs := e.status.all(); len(evs) != n {
		t.Errorf("asset key refusal recorded: %+v", evs[n:])
	}
}
