# Summarises a go test log that failed: one line per kind of goroutine
# blocked for minutes (state, top frame, first Stash frame), the tests
# that were running at a timeout, and the failure lines, last.
function flush() {
  if (state ~ /minutes/) {
    sub(/, [0-9]+ minutes/, "", state)
    blocked[state " " top (ours != "" && ours != top ? " <- " ours : "")]++
  }
  state = ""; top = ""; ours = ""
}
/^(--- FAIL|FAIL|ok  |panic:)|^ +--- FAIL/ { flush(); if ($0 !~ /^ok/) fails = fails "\n" $0; next }
/^goroutine [0-9]+ \[/ { flush(); state = $0; sub(/^goroutine [0-9]+ /, "", state); sub(/:$/, "", state); next }
state != "" && /^[^ \t]/ && !/^created by/ {
  f = $0; sub(/\([^()]*\)$/, "()", f)
  if (top == "") top = f
  if (ours == "" && f ~ /stashcluster\/stash/) ours = f
  next
}
/^$/ { flush() }
/running tests:/ { running = 1; next }
running && /^\t\t/ { tests = tests "\n  running at the timeout:" $0; next }
running { running = 0 }
END {
  flush()
  for (b in blocked) printf "%4d blocked for minutes: %s\n", blocked[b], b
  if (tests != "") print substr(tests, 2)
  if (fails != "") print substr(fails, 2)
}
