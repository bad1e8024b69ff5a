#!/usr/bin/env bash
# Vendor MathJax 3 (npm package `mathjax`) into book/_mathjax so the rendered book shows math
# with no network. The folder must NOT be called `_static`: Jupyter Book 1 would inject every
# .js file found there into every page.
set -euo pipefail
version="${MATHJAX_VERSION:-3.2.2}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/book/_mathjax/mathjax"
if [ -f "$target/tex-mml-chtml.js" ] && [ "$(cat "$target/VERSION" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "mathjax@$version" >/dev/null && tar -xzf mathjax-*.tgz)
rm -rf "$target"
mkdir -p "$target/input/tex" "$target/output/chtml/fonts"
es5="$work/package/es5"
cp "$es5/tex-mml-chtml.js" "$target/"
cp -r "$es5/input/tex/extensions" "$target/input/tex/"
cp -r "$es5/output/chtml/fonts/woff-v2" "$target/output/chtml/fonts/"
cp -r "$es5/ui" "$es5/a11y" "$es5/sre" "$target/"
cp "$work/package/LICENSE" "$target/LICENSE"
echo "$version" > "$target/VERSION"
echo "vendored MathJax $version into book/_mathjax/mathjax"
