#!/bin/sh
# A stand-in for a real scraper: "fetches" a few pages, prints progress, writes a result file.
set -eu
PAGES="${SCRAPER_PAGES:-3}"
OUT="${SCRAPER_OUT:-/tmp/result.json}"
echo "scraper: starting, ${PAGES} pages to fetch"
items=0
i=1
while [ "$i" -le "$PAGES" ]; do
    found=$((i * 7))
    items=$((items + found))
    echo "scraper: page ${i}/${PAGES}: ${found} items"
    i=$((i + 1))
done
printf '{"pages": %s, "items": %s}\n' "$PAGES" "$items" > "$OUT"
echo "scraper: wrote ${OUT}: $(cat "$OUT")"
echo "scraper: done"
cat "$OUT"  # last line: the result, which the operator pushes to XCom
