package artifact

import (
	"strings"
	"testing"

	"github.com/wwcluster/ww/overlays"
)

func TestMergeLines(t *testing.T) {
	base := "root:x:0:0:root:/root:/bin/bash\n# a comment\nmessagebus:x:100:105::/nonexistent:/usr/sbin/nologin\n"
	got := mergeLines(base, "alice:x:1001:1001::/home/alice:/bin/bash\n\n# dropped\nroot:x:0:0:root:/root:/bin/sh", "")
	want := "root:x:0:0:root:/root:/bin/sh\n# a comment\nmessagebus:x:100:105::/nonexistent:/usr/sbin/nologin\nalice:x:1001:1001::/home/alice:/bin/bash\n"
	if got != want {
		t.Fatalf("mergeLines:\n%s\nwant\n%s", got, want)
	}
	if got := mergeLines(""); got != "" {
		t.Fatalf("empty: %q", got)
	}
}

func TestLockMissing(t *testing.T) {
	got := lockMissing("root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n", "root:$y$hash:19000:0:99999:7:::")
	if want := "root:$y$hash:19000:0:99999:7:::\nalice:*:::::::\n"; got != want {
		t.Fatalf("shadow %q, want %q", got, want)
	}
	got = lockMissing("root:x:0:\nhpc:x:2000:alice,bob\n", "root:*::\n")
	if want := "root:*::\nhpc:!::alice,bob\n"; got != want {
		t.Fatalf("gshadow %q, want %q", got, want)
	}
}

// accountsTree is the standard tree with the real generic overlay's
// account templates and an image with its own service accounts.
func accountsTree(t *testing.T) *testTree {
	tt := newTree(t)
	tt.standard()
	for _, f := range []string{"passwd", "group", "shadow", "gshadow"} {
		src, err := overlays.FS.ReadFile("generic/etc/" + f + ".ww")
		if err != nil {
			t.Fatal(err)
		}
		tt.file("overlays/generic/etc/"+f+".ww", string(src), overlays.Mode("generic/etc/"+f+".ww", false))
	}
	img := "images/debian/rootfs/etc/"
	tt.file(img+"passwd", "root:x:0:0:root:/root:/bin/bash\nsystemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\nmessagebus:x:100:105::/nonexistent:/usr/sbin/nologin\n", 0o644)
	tt.file(img+"group", "root:x:0:\nsystemd-network:x:998:\nmessagebus:x:105:\n", 0o644)
	tt.file(img+"shadow", "root:*:19000:0:99999:7:::\nsystemd-network:!*:19000::::::\nmessagebus:!:19000::::::\n", 0o640)
	tt.file(img+"gshadow", "root:*::\nsystemd-network:!*::\nmessagebus:!::\n", 0o640)
	return tt
}

const accountsNodesTOML = testNodesTOML + `
[nodes.n003]
profiles = ["default"]
[nodes.n003.tags]
rack = "r3"
passwd_extra = "alice:x:1001:1001:Alice:/home/alice:/bin/bash\nroot:x:0:0:root:/root:/bin/sh"
group_extra = "alice:x:1001:\nhpc:x:2000:alice"
[nodes.n003.network.eth0]
hwaddr = "52:54:00:00:00:03"
`

// TestRuntimeOverlayAccountsFromImage: the generic overlay's passwd, group,
// shadow and gshadow are the image's own (service accounts kept) plus the
// cluster's accounts from node tags, with shadow entries for every account;
// an edit of the image's passwd is served on the next request.
func TestRuntimeOverlayAccountsFromImage(t *testing.T) {
	tt := accountsTree(t)
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, accountsNodesTOML)

	plain := snap.Nodes.ByName["n001"]
	a, err := b.RuntimeOverlay(bg, snap, plain)
	if err != nil {
		t.Fatal(err)
	}
	files := unpack(t, a)
	if got, want := files["etc/passwd"].data, "root:x:0:0:root:/root:/bin/bash\nsystemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\nmessagebus:x:100:105::/nonexistent:/usr/sbin/nologin\n"; got != want {
		t.Errorf("n001 passwd:\n%s\nwant the image's:\n%s", got, want)
	}
	if got := files["etc/shadow"]; got.data != "root:*:19000:0:99999:7:::\nsystemd-network:!*:19000::::::\nmessagebus:!:19000::::::\n" || got.hdr.Mode.Perm() != 0o600 {
		t.Errorf("n001 shadow (%v):\n%s", got.hdr.Mode.Perm(), got.data)
	}

	cluster := snap.Nodes.ByName["n003"]
	a, err = b.RuntimeOverlay(bg, snap, cluster)
	if err != nil {
		t.Fatal(err)
	}
	files = unpack(t, a)
	wantPasswd := "root:x:0:0:root:/root:/bin/sh\nsystemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\n" +
		"messagebus:x:100:105::/nonexistent:/usr/sbin/nologin\nalice:x:1001:1001:Alice:/home/alice:/bin/bash\n"
	if got := files["etc/passwd"].data; got != wantPasswd {
		t.Errorf("n003 passwd:\n%s\nwant\n%s", got, wantPasswd)
	}
	if got, want := files["etc/group"].data, "root:x:0:\nsystemd-network:x:998:\nmessagebus:x:105:\nalice:x:1001:\nhpc:x:2000:alice\n"; got != want {
		t.Errorf("n003 group:\n%s\nwant\n%s", got, want)
	}
	if got := files["etc/shadow"].data; !strings.HasSuffix(got, "messagebus:!:19000::::::\nalice:*:::::::\n") {
		t.Errorf("n003 shadow lacks a locked alice:\n%s", got)
	}
	if got := files["etc/gshadow"].data; !strings.HasSuffix(got, "messagebus:!::\nalice:!::\nhpc:!::alice\n") {
		t.Errorf("n003 gshadow:\n%s", got)
	}

	// The image gains an account (a package install): served at once.
	tt.file("images/debian/rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nmunge:x:101:101::/nonexistent:/usr/sbin/nologin\n", 0o644)
	a2, err := b.RuntimeOverlay(bg, snap, plain)
	if err != nil {
		t.Fatal(err)
	}
	if got := unpack(t, a2)["etc/passwd"].data; !strings.Contains(got, "munge:x:101") {
		t.Errorf("after the image edit, passwd:\n%s", got)
	}
	if got := unpack(t, a2)["etc/shadow"].data; !strings.Contains(got, "munge:*:::::::") {
		t.Errorf("after the image edit, shadow has no munge entry:\n%s", got)
	}
}

// TestImageFileConfined: ImageFile reads only inside the node's image, and
// takes only a literal path.
func TestImageFileConfined(t *testing.T) {
	for name, tc := range map[string]struct {
		setup func(tt *testTree)
		tmpl  string
		want  string // substring of the build error
	}{
		"absolute symlink out of the image": {
			setup: func(tt *testTree) { tt.symlink("images/debian/rootfs/etc/hostname", "/etc/hostname") },
			tmpl:  `{{.ImageFile "etc/hostname"}}`, want: "ImageFile",
		},
		"dot-dot": {
			setup: func(tt *testTree) { tt.file("images/secret", "host secret\n", 0o644) },
			tmpl:  `{{.ImageFile "../../secret"}}`, want: "ImageFile",
		},
		"not a literal": {
			tmpl: `{{.ImageFile .Node.Name}}`, want: "string literal",
		},
	} {
		t.Run(name, func(t *testing.T) {
			tt := newTree(t)
			tt.standard()
			if tc.setup != nil {
				tc.setup(tt)
			}
			tt.file("overlays/generic/etc/leak.ww", tc.tmpl, 0o644)
			b, _ := newBuilder(t, tt.root)
			snap := snapshot(t, testNodesTOML)
			n := snap.Nodes.ByName["n001"]
			a, err := b.RuntimeOverlay(bg, snap, n)
			if err == nil {
				t.Fatalf("built; etc/leak = %q", unpack(t, a)["etc/leak"].data)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
	// a missing file is empty, not an error
	tt := newTree(t)
	tt.standard()
	tt.file("overlays/generic/etc/none.ww", `[{{.ImageFile "etc/nonexistent"}}]`, 0o644)
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	n := snap.Nodes.ByName["n001"]
	a, err := b.RuntimeOverlay(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	if got := unpack(t, a)["etc/none"].data; got != "[]" {
		t.Fatalf("missing image file rendered %q", got)
	}
}
