// Package serverbench holds micro-benchmarks of wwserver's hot paths (config
// freshness check, iPXE rendering, artifact lookup, status encoding, whole
// handlers without the network), for profiling what tools/bench/run.sh
// measures end to end:
//
//	go test -run '^$' -bench . -benchmem -cpuprofile cpu.out ./tools/bench/internal/serverbench/
//	go tool pprof -top cpu.out
//
// They use only the server packages' exported APIs and build their own trees
// in a temporary directory (1,000 nodes, a 1 MiB fake kernel).
package serverbench
