#!/usr/bin/env bash
# Refresh the console's vendored libraries from the npm registry (needs npm; nothing of
# Node.js is needed to install or run Orchestra). Versions are pinned here; change one,
# run this, look at the diff, commit.
set -euo pipefail
HTM=3.1.1               # htm with Preact and its hooks, one ES module
SOCKET_IO_CLIENT=4.8.1  # the official socket.io-client, ES module build
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$here/gateway/console/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htm@$HTM" "socket.io-client@$SOCKET_IO_CLIENT" >/dev/null
mkdir htm sio
tar xzf "htm-$HTM.tgz" -C htm
tar xzf "socket.io-client-$SOCKET_IO_CLIENT.tgz" -C sio
mkdir -p "$out"
cp htm/package/preact/standalone.module.js "$out/preact-htm.module.js"
cp htm/package/LICENSE "$out/LICENSE.htm"
cp sio/package/dist/socket.io.esm.min.js "$out/socket.io.esm.min.js"
cp sio/package/LICENSE "$out/LICENSE.socket.io-client"
cat > "$out/VENDORED.md" <<NOTE
# Vendored libraries of the console

Refreshed by \`scripts/vendor_console.sh\` from the npm registry; do not edit by hand.

| file | package | version | licence |
|---|---|---|---|
| \`preact-htm.module.js\` | htm (\`htm/preact/standalone.module.js\`: Preact, its hooks and htm in one module) | $HTM | Apache-2.0 (\`LICENSE.htm\`); Preact is MIT |
| \`socket.io.esm.min.js\` | socket.io-client (\`dist/socket.io.esm.min.js\`) | $SOCKET_IO_CLIENT | MIT (\`LICENSE.socket.io-client\`) |

\`preact-htm.module.d.ts\` and \`socket.io.esm.min.d.ts\` are ours: the types of what the
console uses of each, for \`tsc --checkJs\` (\`gateway/console/tsconfig.json\`); the script
leaves them alone.
NOTE
echo "vendored htm $HTM and socket.io-client $SOCKET_IO_CLIENT into $out"
