#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Builds one mutant keygate per authorization rule (meson -Dbreak_rule=<rule>, into
# /tmp/kg-mutant-<rule>) and runs the authorization matrix against each, printing
# "rule → rows that failed". Exits non-zero if a mutant leaves every row passing.
# Not part of the default test run: it builds six binaries. See tests/e2e/matrix/README.md.
#
#   tests/e2e/matrix/prove-rows-can-fail.sh [--rules scope,org] [--baseline build/keygate] [--list-uncaught]
set -eu
cd "$(dirname "$0")/../../.."
exec node tests/e2e/matrix/mutants.mjs "$@"
