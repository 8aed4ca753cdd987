/**
 * A built-in 5×7 bitmap font (ASCII 32–126, two extra rows for descenders) so labels can be drawn on
 * any machine, with no system fonts. Glyphs are drawn on a 6×10 cell: 1 column of letter spacing, and
 * 1 row of line spacing under the descenders.
 */
import { type Raster, type Rgb, BLACK, fillRect } from './raster.js';

export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 9;
/** Horizontal advance per character and vertical advance per line, at scale 1. */
export const CHAR_ADVANCE = 6;
export const LINE_HEIGHT = 10;

// Each glyph: rows from the top, '#' = ink. Seven rows sit on the baseline; two more (for g j p q y , ;)
// hang below it. Rows left out are empty.
const GLYPH_ROWS: Record<string, string> = {
  ' ': '',
  '!': '..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..',
  '"': '.#.#. .#.#. .#.#.',
  '#': '.#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.',
  '$': '..#.. .#### #.#.. .###. ..#.# ####. ..#..',
  '%': '##... ##..# ...#. ..#.. .#... #..## ...##',
  '&': '.##.. #..#. #.#.. .#... #.#.# #..#. .##.#',
  "'": '..#.. ..#.. .#...',
  '(': '...#. ..#.. .#... .#... .#... ..#.. ...#.',
  ')': '.#... ..#.. ...#. ...#. ...#. ..#.. .#...',
  '*': '..... ..#.. #.#.# .###. #.#.# ..#.. .....',
  '+': '..... ..#.. ..#.. ##### ..#.. ..#.. .....',
  ',': '..... ..... ..... ..... ..... .##.. .##.. ..#.. .#...',
  '-': '..... ..... ..... ##### ..... ..... .....',
  '.': '..... ..... ..... ..... ..... .##.. .##..',
  '/': '....# ....# ...#. ..#.. .#... #.... #....',
  '0': '.###. #...# #..## #.#.# ##..# #...# .###.',
  '1': '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
  '2': '.###. #...# ....# ...#. ..#.. .#... #####',
  '3': '##### ...#. ..#.. ...#. ....# #...# .###.',
  '4': '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
  '5': '##### #.... ####. ....# ....# #...# .###.',
  '6': '..##. .#... #.... ####. #...# #...# .###.',
  '7': '##### ....# ...#. ..#.. .#... .#... .#...',
  '8': '.###. #...# #...# .###. #...# #...# .###.',
  '9': '.###. #...# #...# .#### ....# ...#. .##..',
  ':': '..... .##.. .##.. ..... .##.. .##.. .....',
  ';': '..... .##.. .##.. ..... .##.. .##.. ..#.. .#...',
  '<': '...#. ..#.. .#... #.... .#... ..#.. ...#.',
  '=': '..... ..... ##### ..... ##### ..... .....',
  '>': '.#... ..#.. ...#. ....# ...#. ..#.. .#...',
  '?': '.###. #...# ....# ...#. ..#.. ..... ..#..',
  '@': '.###. #...# ....# .##.# #.#.# #.#.# .###.',
  'A': '.###. #...# #...# ##### #...# #...# #...#',
  'B': '####. #...# #...# ####. #...# #...# ####.',
  'C': '.###. #...# #.... #.... #.... #...# .###.',
  'D': '###.. #..#. #...# #...# #...# #..#. ###..',
  'E': '##### #.... #.... ####. #.... #.... #####',
  'F': '##### #.... #.... ####. #.... #.... #....',
  'G': '.###. #...# #.... #.### #...# #...# .####',
  'H': '#...# #...# #...# ##### #...# #...# #...#',
  'I': '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  'J': '..### ...#. ...#. ...#. ...#. #..#. .##..',
  'K': '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
  'L': '#.... #.... #.... #.... #.... #.... #####',
  'M': '#...# ##.## #.#.# #.#.# #...# #...# #...#',
  'N': '#...# #...# ##..# #.#.# #..## #...# #...#',
  'O': '.###. #...# #...# #...# #...# #...# .###.',
  'P': '####. #...# #...# ####. #.... #.... #....',
  'Q': '.###. #...# #...# #...# #.#.# #..#. .##.#',
  'R': '####. #...# #...# ####. #.#.. #..#. #...#',
  'S': '.#### #.... #.... .###. ....# ....# ####.',
  'T': '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  'U': '#...# #...# #...# #...# #...# #...# .###.',
  'V': '#...# #...# #...# #...# #...# .#.#. ..#..',
  'W': '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
  'X': '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
  'Y': '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
  'Z': '##### ....# ...#. ..#.. .#... #.... #####',
  '[': '.###. .#... .#... .#... .#... .#... .###.',
  '\\': '#.... #.... .#... ..#.. ...#. ....# ....#',
  ']': '.###. ...#. ...#. ...#. ...#. ...#. .###.',
  '^': '..#.. .#.#. #...#',
  '_': '..... ..... ..... ..... ..... ..... ..... #####',
  '`': '.#... ..#.. ...#.',
  'a': '..... ..... .###. ....# .#### #...# .####',
  'b': '#.... #.... #.##. ##..# #...# #...# ####.',
  'c': '..... ..... .###. #.... #.... #...# .###.',
  'd': '....# ....# .##.# #..## #...# #...# .####',
  'e': '..... ..... .###. #...# ##### #.... .###.',
  'f': '..##. .#..# .#... ###.. .#... .#... .#...',
  'g': '..... ..... .#### #...# #...# #...# .#### ....# .###.',
  'h': '#.... #.... #.##. ##..# #...# #...# #...#',
  'i': '..#.. ..... .##.. ..#.. ..#.. ..#.. .###.',
  'j': '...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..',
  'k': '#.... #.... #..#. #.#.. ##... #.#.. #..#.',
  'l': '.##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  'm': '..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#',
  'n': '..... ..... #.##. ##..# #...# #...# #...#',
  'o': '..... ..... .###. #...# #...# #...# .###.',
  'p': '..... ..... ####. #...# #...# #...# ####. #.... #....',
  'q': '..... ..... .#### #...# #...# #...# .#### ....# ....#',
  'r': '..... ..... #.##. ##..# #.... #.... #....',
  's': '..... ..... .###. #.... .###. ....# ####.',
  't': '.#... .#... ###.. .#... .#... .#..# ..##.',
  'u': '..... ..... #...# #...# #...# #..## .##.#',
  'v': '..... ..... #...# #...# #...# .#.#. ..#..',
  'w': '..... ..... #...# #...# #.#.# #.#.# .#.#.',
  'x': '..... ..... #...# .#.#. ..#.. .#.#. #...#',
  'y': '..... ..... #...# #...# #...# #...# .#### ....# .###.',
  'z': '..... ..... ##### ...#. ..#.. .#... #####',
  '{': '...#. ..#.. ..#.. .#... ..#.. ..#.. ...#.',
  '|': '..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  '}': '.#... ..#.. ..#.. ...#. ..#.. ..#.. .#...',
  '~': '..... ..... .#... #.#.# ...#. ..... .....',
};

/** Glyph bitmaps: GLYPH_HEIGHT row masks per character, bit 4 = leftmost column. */
const GLYPHS = new Map<string, Uint8Array>();
for (const [ch, rows] of Object.entries(GLYPH_ROWS)) {
  const masks = new Uint8Array(GLYPH_HEIGHT);
  const parts = rows === '' ? [] : rows.split(' ');
  if (parts.length > GLYPH_HEIGHT) throw new Error(`font: glyph ${JSON.stringify(ch)} has too many rows`);
  parts.forEach((row, y) => {
    if (row.length !== GLYPH_WIDTH) throw new Error(`font: glyph ${JSON.stringify(ch)} row ${y} is not ${GLYPH_WIDTH} wide`);
    for (let x = 0; x < GLYPH_WIDTH; x++) if (row[x] === '#') masks[y] |= 1 << (GLYPH_WIDTH - 1 - x);
  });
  GLYPHS.set(ch, masks);
}
const FALLBACK_GLYPH = GLYPHS.get('?')!;

/** The row masks for a character; characters outside ASCII 32–126 show as '?'. */
export function glyphFor(ch: string): Uint8Array {
  return GLYPHS.get(ch) ?? FALLBACK_GLYPH;
}

/** Characters the font draws as themselves. */
export function hasGlyph(ch: string): boolean {
  return GLYPHS.has(ch);
}

export interface TextStyle {
  color?: Rgb;
  /** Integer pixel scale: 1 gives 6×10 cells, 2 gives 12×20. */
  scale?: number;
  /** Fill the text's cells first (for labels over pictures). */
  background?: Rgb;
}

/** Width and height in pixels of `text` (newlines start new lines). */
export function measureText(text: string, scale = 1): { width: number; height: number } {
  const lines = text.split('\n');
  const longest = Math.max(...lines.map((l) => [...l].length));
  // The last column's spacing is not part of the ink.
  return { width: longest === 0 ? 0 : (longest * CHAR_ADVANCE - 1) * scale, height: lines.length * LINE_HEIGHT * scale };
}

/** Draw `text` with its top-left corner at (x, y). Returns the width drawn. */
export function drawText(r: Raster, x: number, y: number, text: string, style: TextStyle = {}): number {
  const color = style.color ?? BLACK;
  const scale = Math.max(1, Math.floor(style.scale ?? 1));
  if (style.background) {
    const size = measureText(text, scale);
    fillRect(r, x - scale, y - scale, size.width + 2 * scale, size.height + scale, style.background);
  }
  let width = 0;
  text.split('\n').forEach((line, lineIndex) => {
    let cx = x;
    const top = y + lineIndex * LINE_HEIGHT * scale;
    for (const ch of line) {
      const glyph = glyphFor(ch);
      for (let gy = 0; gy < GLYPH_HEIGHT; gy++) {
        const mask = glyph[gy];
        if (mask === 0) continue;
        for (let gx = 0; gx < GLYPH_WIDTH; gx++) {
          if (mask & (1 << (GLYPH_WIDTH - 1 - gx))) fillRect(r, cx + gx * scale, top + gy * scale, scale, scale, color);
        }
      }
      cx += CHAR_ADVANCE * scale;
    }
    width = Math.max(width, cx - x);
  });
  return width;
}

/** Draw text centred horizontally on `cx`. */
export function drawTextCentered(r: Raster, cx: number, y: number, text: string, style: TextStyle = {}): void {
  const { width } = measureText(text, style.scale ?? 1);
  drawText(r, Math.round(cx - width / 2), y, text, style);
}

/**
 * Break `text` into lines of at most `maxChars` characters, at spaces where possible; at most
 * `maxLines` lines, the last one cut with '..' when text remains.
 */
export function wrapText(text: string, maxChars: number, maxLines = Infinity): string[] {
  maxChars = Math.max(1, Math.floor(maxChars));
  const lines: string[] = [];
  for (const paragraph of text.split('\n')) {
    let line = '';
    for (const word of paragraph.split(/ +/)) {
      let rest = word;
      while ([...rest].length > 0) {
        const candidate = line === '' ? rest : `${line} ${rest}`;
        if ([...candidate].length <= maxChars) { line = candidate; rest = ''; break; }
        if (line !== '') { lines.push(line); line = ''; continue; }
        // A single word longer than the line: hard-break it.
        const chars = [...rest];
        lines.push(chars.slice(0, maxChars).join(''));
        rest = chars.slice(maxChars).join('');
      }
    }
    lines.push(line);
  }
  if (lines.length <= maxLines) return lines;
  const kept = lines.slice(0, maxLines);
  const last = [...kept[maxLines - 1]];
  kept[maxLines - 1] = (last.length + 2 > maxChars ? last.slice(0, Math.max(0, maxChars - 2)).join('') : last.join('')) + '..';
  return kept;
}
