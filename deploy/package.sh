#!/usr/bin/env bash
# Builds the Debian package: deploy/package.sh [OUT_DIR] -> OUT_DIR/migraine-connector_<version>_<arch>.deb
# (default OUT_DIR: build-package/). A Release build of the connector alone in build-package/, with
# the code tables' default folder set to where the package installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-package}
deploy/install-deps.sh
cmake -S . -B build-package -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DMIGRAINE_MAPPINGS_DIR=/usr/share/migraine-connector > /dev/null
cmake --build build-package -j "$(nproc)" --target migraine-connector man_page
(cd build-package && cpack -G DEB > cpack.log) || { cat build-package/cpack.log; exit 1; }
mkdir -p "$out"
deb=$(ls build-package/migraine-connector_*.deb)
[ "$(dirname "$deb")" -ef "$out" ] || cp "$deb" "$out/"
echo "$out/$(basename "$deb")"
