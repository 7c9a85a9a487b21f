# Shared by the measuring scripts of bench/ (sourced, not run, from the repository root): the
# helpers of scripts/ci/lib.sh (release build, server on 127.0.0.1:0, logpipe-bench data).
# shellcheck source=scripts/ci/lib.sh
. scripts/ci/lib.sh

# cpu_ticks: the server's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{print $14+$15}' /proc/$pid/stat; }
