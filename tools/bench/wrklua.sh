# shellcheck shell=bash
# tools/bench/wrklua.sh, sourced by the wrk benchmarks.
# wrk_cycle_lua OUT LIST PREFIX: a wrk script that asks for PREFIX followed
# by each line of LIST in turn, round and round (every node's iPXE script,
# every chunk of an image).
wrk_cycle_lua() {
	cat >"$1" <<LUA
local names = {}
for line in io.lines("$2") do names[#names + 1] = line end
local i = 0
request = function()
	i = i % #names + 1
	return wrk.format("GET", "$3" .. names[i])
end
LUA
}
