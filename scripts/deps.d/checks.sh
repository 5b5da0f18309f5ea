#!/usr/bin/env bash
# sshd -T refuses to run without its privilege separation directory.
set -euo pipefail
mkdir -p /run/sshd
