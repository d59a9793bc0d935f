# shellcheck shell=bash
# Sourced by box/build.sh and scripts/pristine.sh: the Debian mirror this machine's APT
# already uses, so that a root file system built here fetches from the same place (a
# machine that reaches Debian only through its configured mirror needs exactly that).
#
#   debian_mirror SUITE   prints the first URI configured for SUITE (deb822 .sources or
#                         one-line .list), or nothing

debian_mirror() {
  local suite="$1"
  { _debian_mirror_deb822 "$suite"; _debian_mirror_list "$suite"; } | sed -n 1p  # sed reads to the end: no SIGPIPE under pipefail
}

_debian_mirror_deb822() {
  local suite="$1" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '
      function flush() { if (uri != "" && ok && suites ~ ("(^| )" s "( |$)")) { print uri; found=1; exit } }
      /^[[:space:]]*$/ { flush(); uri=""; suites=""; ok=1; next }
      BEGIN { ok=1 }
      /^Types:/   { ok = ($0 ~ /(^|[ :])deb( |$)/) }
      /^URIs:/    { uri=$2 }
      /^Suites:/  { $1=""; suites=substr($0,2) }
      END { if (!found) flush() }' "$f"
  done
}

_debian_mirror_list() {
  local suite="$1" f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                   if ($(i+1)==s) { print $i; exit } }' "$f"
  done
}
