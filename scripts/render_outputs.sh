#!/usr/bin/env bash
# Rendering check: does a real office suite open and print what the pipeline writes?
#
#   scripts/render_outputs.sh [--out DIR] [FILE.xlsx|FILE.docx ...]
#
# Converts each file with LibreOffice headless to PDF, prints one line per file
#   <pages>\t<page width>x<page height>\t<file>\t<png of page 1>
# and renders page 1 to PNG (pdftoppm) into DIR (default: docs/img). Without files it
# takes one XLSX and one DOCX found under $VBP_OUTPUT_DIR (default data/output), the
# largest of each kind (the one most likely to print badly).
#
# Needs (Debian): apt-get install -y --no-install-recommends \
#   libreoffice-calc libreoffice-writer poppler-utils fonts-noto-cjk
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/docs/img"
RESOLUTION="${RENDER_DPI:-110}"
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#--out=}"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) files+=("$1"); shift ;;
  esac
done

for tool in soffice pdftoppm; do
  command -v "$tool" >/dev/null || { echo "render_outputs: $tool not found (see the apt line in $0)" >&2; exit 2; }
done

if [ ${#files[@]} -eq 0 ]; then
  search="${VBP_OUTPUT_DIR:-$ROOT/data/output}"
  for ext in xlsx docx; do
    found="$(find "$search" -type f -name "*.$ext" -printf '%s\t%p\n' 2>/dev/null | sort -rn | head -1 | cut -f2-)"
    [ -n "$found" ] && files+=("$found")
  done
  [ ${#files[@]} -gt 0 ] || { echo "render_outputs: no .xlsx or .docx under $search" >&2; exit 1; }
fi

mkdir -p "$OUT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A private LibreOffice profile: parallel runs must not share (and lock) ~/.config.
profile="file://$work/profile"
# The files name Windows' Chinese fonts (宋体, 黑体). Without this, fontconfig picks the
# Japanese cut of Noto CJK for them, whose glyphs a Chinese reader sees as wrong; map them
# to the Simplified Chinese cuts (serif for 宋体/仿宋, sans for 黑体/等线/雅黑).
cat >"$work/fonts.conf" <<'CONF'
<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <alias binding="strong"><family>宋体</family><prefer><family>Noto Serif CJK SC</family></prefer></alias>
  <alias binding="strong"><family>SimSun</family><prefer><family>Noto Serif CJK SC</family></prefer></alias>
  <alias binding="strong"><family>新宋体</family><prefer><family>Noto Serif CJK SC</family></prefer></alias>
  <alias binding="strong"><family>仿宋</family><prefer><family>Noto Serif CJK SC</family></prefer></alias>
  <alias binding="strong"><family>FangSong</family><prefer><family>Noto Serif CJK SC</family></prefer></alias>
  <alias binding="strong"><family>黑体</family><prefer><family>Noto Sans CJK SC</family></prefer></alias>
  <alias binding="strong"><family>SimHei</family><prefer><family>Noto Sans CJK SC</family></prefer></alias>
  <alias binding="strong"><family>等线</family><prefer><family>Noto Sans CJK SC</family></prefer></alias>
  <alias binding="strong"><family>DengXian</family><prefer><family>Noto Sans CJK SC</family></prefer></alias>
  <alias binding="strong"><family>微软雅黑</family><prefer><family>Noto Sans CJK SC</family></prefer></alias>
  <alias binding="strong"><family>Microsoft YaHei</family><prefer><family>Noto Sans CJK SC</family></prefer></alias>
  <match target="pattern"><edit name="lang" mode="prepend"><string>zh-cn</string></edit></match>
</fontconfig>
CONF
export FONTCONFIG_FILE="$work/fonts.conf"

page_info() {  # prints "<pages> <width>x<height>" of a PDF (points)
  if command -v pdfinfo >/dev/null; then
    pdfinfo "$1" | awk '/^Pages:/ {p=$2} /^Page size:/ {w=$3; h=$5} END {printf "%s %.0fx%.0f\n", p, w, h}'
  else
    python3 - "$1" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read()
pages = len(re.findall(rb"/Type\s*/Page(?!s)", data))
box = re.search(rb"/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", data)
w, h = (float(box.group(3)), float(box.group(4))) if box else (0, 0)
print(f"{pages} {w:.0f}x{h:.0f}")
PY
  fi
}

status=0
for file in "${files[@]}"; do
  if [ ! -f "$file" ]; then echo "render_outputs: no such file: $file" >&2; status=1; continue; fi
  stem="$(basename "${file%.*}")"
  # a name of its own in the work folder: two inputs may share a stem
  mkdir -p "$work/in" && cp "$file" "$work/in/$stem.${file##*.}"
  if ! soffice "-env:UserInstallation=$profile" --headless --norestore \
       --convert-to pdf --outdir "$work/pdf" "$work/in/$stem.${file##*.}" >"$work/soffice.log" 2>&1 \
     || [ ! -s "$work/pdf/$stem.pdf" ]; then
    echo "render_outputs: LibreOffice could not convert $file:" >&2; cat "$work/soffice.log" >&2
    status=1; continue
  fi
  read -r pages size < <(page_info "$work/pdf/$stem.pdf")
  pdftoppm -png -r "$RESOLUTION" -f 1 -l 1 -singlefile "$work/pdf/$stem.pdf" "$OUT/$stem"
  [ -n "${RENDER_KEEP_PDF:-}" ] && cp "$work/pdf/$stem.pdf" "$OUT/$stem.pdf"
  printf '%s\t%s\t%s\t%s\n' "$pages" "$size" "$file" "$OUT/$stem.png"
done
exit $status
