# splice_table, shared by tools/bench/run.sh and tools/bootstorm/storm.sh.
# shellcheck shell=bash

# splice_table FILE NAME STAMP TABLE: replaces what lies between the lines
# "<!-- bench:NAME:begin -->" and "<!-- bench:NAME:end -->" in FILE with
# STAMP and the contents of TABLE. FILE is left alone when it lacks them.
splice_table() {
	local file=$1 name=$2 stamp=$3 table=$4
	grep -q "^<!-- bench:$name:begin -->$" "$file" || { echo "bench: no bench:$name markers in $file" >&2; return 0; }
	awk -v name="$name" -v stamp="$stamp" -v table="$table" '
		$0 == "<!-- bench:" name ":begin -->" {
			print; print ""; print stamp; print ""
			while ((getline line < table) > 0) print line
			print ""; skip = 1; next
		}
		$0 == "<!-- bench:" name ":end -->" { skip = 0 }
		!skip { print }' "$file" >"$file.tmp"
	mv "$file.tmp" "$file"
}
