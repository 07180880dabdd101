package nodeapi

import "testing"

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{"52:54:00:AB:cd:01": "52:54:00:ab:cd:01", "52-54-00-ab-CD-01": "52:54:00:ab:cd:01"} {
		got, err := NormalizeMAC(in)
		if err != nil || got != want {
			t.Errorf("NormalizeMAC(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "52:54:00:ab:cd", "52:54:00:ab:cd:01:02:03", "zz:54:00:ab:cd:01", "5254.00ab.cd01", "../../../etc/pa"} {
		if _, err := NormalizeMAC(bad); err == nil {
			t.Errorf("NormalizeMAC(%q) accepted", bad)
		}
	}
	if _, err := NormalizeMAC("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"); err == nil {
		t.Fatal("20-byte infiniband address must be refused")
	}
}
