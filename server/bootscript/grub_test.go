package bootscript

import (
	"bytes"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/bootplan"
	"github.com/wwcluster/ww/server/config"
)

func newGRUB(t *testing.T) *GRUB {
	t.Helper()
	g, err := NewGRUB()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGRUBGolden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secure  bool
		mac     string
		servers []string
		via     string
	}{
		{"grub_secure", true, macN002, []string{self}, ""},
		{"grub_insecure", false, macN002, []string{self}, ViaTFTP},
		{"grub_insecure_assetkey", false, macN001, []string{self}, ""},
		{"grub_two_servers", false, macN002, []string{self, "10.0.2.2:9873"}, ""},
		{"grub_http", true, macN002, []string{self, "10.0.2.2:9873"}, ViaHTTP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGRUB(t)
			snap := snapshot(t, tc.secure)
			n := snap.Nodes.ByMAC[tc.mac]
			script, sent, err := g.Script(Request{Snap: snap, Node: n, MAC: tc.mac, Servers: tc.servers, Via: tc.via})
			if err != nil || sent != SentGRUB {
				t.Fatalf("Script: sent %q, err %v", sent, err)
			}
			golden(t, tc.name, script)
			again, _, err := g.Script(Request{Snap: snap, Node: n, MAC: tc.mac, Servers: tc.servers, Via: tc.via})
			if err != nil || &again[0] != &script[0] {
				t.Errorf("second Script call was not served from the cache (err %v)", err)
			}
			if tc.via == ViaHTTP {
				return
			}
			var buf bytes.Buffer
			if sent, err := g.RenderPlan(&buf, bootplan.New(snap.Server, n, tc.mac, tc.servers[1:])); err != nil || sent != SentGRUB {
				t.Fatalf("RenderPlan: sent %q, err %v", sent, err)
			}
			if buf.String() != string(script) {
				t.Errorf("RenderPlan differs from Script:\n%s\n---\n%s", buf.String(), script)
			}
		})
	}
}

// TestGRUBTransportsDiffer: the cache keeps a config per transport.
func TestGRUBTransportsDiffer(t *testing.T) {
	g := newGRUB(t)
	snap := snapshot(t, true)
	n := snap.Nodes.ByMAC[macN002]
	tftp, _, err := g.Script(Request{Snap: snap, Node: n, MAC: macN002, Servers: []string{self}})
	if err != nil {
		t.Fatal(err)
	}
	http, _, err := g.Script(Request{Snap: snap, Node: n, MAC: macN002, Servers: []string{self}, Via: ViaHTTP})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(tftp), "'(tftp,10.0.2.1)/kernel/"+macN002+"'") {
		t.Errorf("TFTP config does not load the kernel via (tftp,10.0.2.1):\n%s", tftp)
	}
	if !strings.Contains(string(http), "'(http,10.0.2.1:9873)/kernel/"+macN002+"'") {
		t.Errorf("HTTP config does not load the kernel via (http,10.0.2.1:9873):\n%s", http)
	}
	if _, _, err := g.Script(Request{Snap: snap, Node: n, MAC: macN002, Servers: []string{self}, Via: "ftp"}); err == nil {
		t.Error("unknown transport accepted")
	}
}

func TestGRUBUnknownAndBootstrapGolden(t *testing.T) {
	g := newGRUB(t)
	var buf bytes.Buffer
	if err := g.RenderUnknown(&buf, snapshot(t, true), "52:54:00:00:00:99"); err != nil {
		t.Fatal(err)
	}
	golden(t, "grub_unknown", buf.Bytes())
	buf.Reset()
	// A peer whose name GRUB could not parse as a device is left out.
	if err := g.Bootstrap(&buf, []string{self, "10.0.2.2:9873", "bad'name:1"}, ""); err != nil {
		t.Fatal(err)
	}
	golden(t, "grub_bootstrap", buf.Bytes())
	buf.Reset()
	if err := g.Bootstrap(&buf, []string{self}, ViaHTTP); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `configfile "(http,10.0.2.1:9873)/grub/${net_default_mac}"`) {
		t.Errorf("HTTP bootstrap:\n%s", buf.String())
	}
}

// grubWords splits one line of GRUB script into words the way GRUB's
// lexer does for what the renderer writes: '…' literal, \x escapes x,
// "…" with \x escapes; whitespace separates words.
func grubWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				t.Fatalf("unterminated ' in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '\\' && i+1 < len(line):
			cur.WriteByte(line[i+1])
			i++
			in = true
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				t.Fatalf("unterminated \" in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '$' || c == ';':
			t.Fatalf("unquoted %c in %q", c, line)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// TestGRUBQuoting: kernel arguments and names reach GRUB as the words
// they are: nothing is expanded ($), ends a command (;, newline) or
// splits differently than iPXE would pass the command line.
func TestGRUBQuoting(t *testing.T) {
	nodes := `
[nodes.n]
image = "x"
kernel_args = ["console=ttyS0", "x=$(reboot)", "it's", "two words", "a|b", "$HOME"]
[nodes.n.network.eth0]
hwaddr = "52:54:00:00:00:05"
`
	srv, err := config.ParseServer("wwserver.toml", []byte("address = \"10.0.2.1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := config.ParseNodes("nodes.toml", []byte(nodes))
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:00:00:05"
	g := newGRUB(t)
	var buf bytes.Buffer
	if _, err := g.RenderPlan(&buf, bootplan.New(srv, ns.ByName["n"], mac, nil)); err != nil {
		t.Fatal(err)
	}
	var linux []string
	for _, l := range strings.Split(buf.String(), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "if linux ") {
			linux = grubWords(t, strings.TrimSuffix(strings.TrimPrefix(l, "if "), "; then set ww_ok=1"))
		}
	}
	want := []string{"linux", "(tftp,10.0.2.1)/kernel/" + mac, "wwid=" + mac, "wwserver=10.0.2.1:9873", "wwroot=tmpfs",
		"console=ttyS0", "x=$(reboot)", "it's", "two", "words", "a|b", "$HOME"}
	if strings.Join(linux, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("linux words:\n got %q\nwant %q\n%s", linux, want, buf.String())
	}

	// A control character (which config validation refuses) fails the
	// render instead of writing a second line.
	n := *ns.ByName["n"]
	n.KernelArgs = []string{"a\nreboot"}
	buf.Reset()
	if _, err := g.RenderPlan(&buf, bootplan.New(srv, &n, mac, nil)); err == nil || buf.Len() != 0 {
		t.Errorf("control character: err %v, wrote %d bytes", err, buf.Len())
	}
}
