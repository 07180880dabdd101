package cluster

import (
	"os"
	"testing"

	"github.com/wwcluster/ww/server/etcdstate/etcdtest"
)

func TestMain(m *testing.M) {
	etcdtest.MaybeRunChild()
	os.Exit(m.Run())
}
