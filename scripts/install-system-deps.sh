#!/usr/bin/env bash
# Installs the Debian packages cachebot's demo and tests run for real: Varnish with xkey, nginx with the
# cache-purge module, Redis, memcached, graphviz, and chromium (the web console's browser tests drive it through
# playwright, which cannot download a browser of its own here). Does nothing when they are already there.
set -euo pipefail

packages=(varnish varnish-modules nginx libnginx-mod-http-cache-purge memcached redis-server graphviz chromium)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "Need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# policy-rc.d keeps the packages' own services from starting: cachebot starts its own on free ports.
$sudo sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
