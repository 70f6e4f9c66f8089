#!/bin/sh
# Make build/start-server.patched.js from @portkey-ai/gateway's start-server.js
# (run by bench/run after `npm ci`). One workaround, nothing else changed:
# on Node 20 every streaming request through the gateway (1.15.2) fails with
# "TypeError: immutable" because ResponseService.create() appends its
# x-portkey-* headers to a Response whose Headers are immutable (the one
# from fetch()). When that is the case, copy the Response first (same body
# stream, status and headers). Non-streaming responses, which already have
# mutable headers, take the original path.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$here/node_modules/@portkey-ai/gateway/build/start-server.js
dst=$here/node_modules/@portkey-ai/gateway/build/start-server.patched.js
old='return r?(i=t,c=s):'
new='return r?(i=t,c=s,function(){try{i.headers.set("x-portkey-bench","1");i.headers.delete("x-portkey-bench")}catch{i=new Response(t.body,{status:t.status,statusText:t.statusText,headers:new Headers(t.headers)})}}()):'
n=$(grep -c -F "$old" "$src" || true)
if [ "$n" != 1 ]; then
	echo "patch-gateway: pattern found $n times in $src (gateway version changed?)" >&2
	exit 1
fi
awk -v old="$old" -v new="$new" '{
	i = index($0, old)
	if (i) $0 = substr($0, 1, i - 1) new substr($0, i + length(old))
	print
}' "$src" > "$dst.tmp"
mv "$dst.tmp" "$dst"
