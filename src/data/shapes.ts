/**
 * Shapes: a procedural, captioned, compositional dataset. Each sample is 1–3 coloured shapes placed in
 * the cells of a 3×3 grid, a caption that names them ("a small red circle above a large blue square")
 * and the structured scene behind both, so a generated image can later be checked against its prompt.
 *
 * Sample i is a pure function of (seed, split, i): it owns a Philox stream derived from those numbers,
 * so any worker can build any sample in any order. Splits can hold out attribute combinations
 * ("no purple star in training") to measure compositional generalisation.
 */
// rng.js directly, not the engine index: worker threads load this module and need no kernels.
import { Rng } from '../engine/rng.js';
import {
  type Dataset, type DatasetSpec, type PixelRange, type Sample, derivedSeed, rangeMapper, withArticle,
} from './types.js';

export const SHAPE_NAMES = ['circle', 'square', 'triangle', 'star', 'diamond', 'hexagon', 'cross'] as const;
export type ShapeName = (typeof SHAPE_NAMES)[number];

/** Named colours with fixed sRGB values (0–255), chosen to stay distinct from each other and from black. */
export const COLOURS = {
  red: [220, 40, 40],
  orange: [245, 140, 30],
  yellow: [240, 220, 50],
  green: [50, 170, 70],
  cyan: [60, 210, 220],
  blue: [50, 90, 220],
  purple: [140, 60, 190],
  pink: [245, 140, 200],
  white: [245, 245, 245],
  brown: [140, 90, 50],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ColourName = keyof typeof COLOURS;
export const COLOUR_NAMES = Object.keys(COLOURS) as ColourName[];

export const SIZE_NAMES = ['small', 'large'] as const;
export type SizeName = (typeof SIZE_NAMES)[number];
/** Object radius as a fraction of the image side: a large object still fits its grid cell. */
export const SIZE_RADIUS: Record<SizeName, number> = { small: 0.11, large: 0.15 };

/** Grid cells in row-major order (row 0 is the top). */
export const POSITION_NAMES = [
  'top left', 'top', 'top right', 'left', 'centre', 'right', 'bottom left', 'bottom', 'bottom right',
] as const;
export type PositionName = (typeof POSITION_NAMES)[number];
const POSITION_PHRASES: Record<PositionName, string> = {
  'top left': 'in the top left', top: 'at the top', 'top right': 'in the top right',
  left: 'on the left', centre: 'in the centre', right: 'on the right',
  'bottom left': 'in the bottom left', bottom: 'at the bottom', 'bottom right': 'in the bottom right',
};

export const RELATION_NAMES = ['above', 'below', 'left of', 'right of'] as const;
export type RelationName = (typeof RELATION_NAMES)[number];

export interface SceneObject {
  shape: ShapeName;
  colour: ColourName;
  rgb: readonly [number, number, number];
  size: SizeName;
  position: PositionName;
  /** Grid cell [column, row], each 0..2. */
  cell: [number, number];
  /** Centre in pixels (always a pixel centre, so the pixel under it is fully covered). */
  centre: [number, number];
  /** Radius in pixels of the circle the shape is drawn in. */
  radius: number;
  /** Tight box [x0, y0, x1, y1] in pixels (continuous coordinates, clipped to the image). */
  bbox: [number, number, number, number];
  /** Whether the caption states this object's size. */
  sizeInCaption: boolean;
}

/** "objects[subject] <relation> objects[object]", as stated in the caption (and true in the image). */
export interface SceneRelation {
  subject: number;
  relation: RelationName;
  object: number;
}

export interface Scene {
  width: number;
  height: number;
  background: readonly [number, number, number];
  /** In the order the caption mentions them. */
  objects: SceneObject[];
  relations: SceneRelation[];
  caption: string;
}

export interface ShapesSample extends Sample {
  scene: Scene;
}

/** An attribute combination; an object matches when every given attribute is equal. */
export interface AttributeCombo {
  shape?: ShapeName;
  colour?: ColourName;
  size?: SizeName;
  position?: PositionName;
}

export type ShapesSplit = 'train' | 'test' | 'heldout';

export interface ShapesOptions {
  seed?: number;
  /** Number of samples (default 10 000); more are free, they are generated on demand. */
  length?: number;
  /** Image side in pixels (default 32; 64 also standard; at least 24). */
  size?: number;
  /**
   * 'train' and 'test' are disjoint streams without held-out combinations;
   * 'heldout' holds only scenes containing at least one of them.
   */
  split?: ShapesSplit;
  holdOut?: AttributeCombo[];
  minObjects?: number;
  maxObjects?: number;
  /** Probability that the caption states an object's size (default 0.5; 'canonical' captions always do). */
  sizeInCaption?: number;
  /**
   * 'random' (default): the caption is one of the true ones, drawn at random (object order, relation, size
   * mention). 'canonical': always the same one for a scene — objects in reading order (top row first, left to
   * right), "above"/"below" when the rows differ and "left of"/"right of" otherwise, every size stated. Same
   * images either way; only the words differ. A captioner learns the canonical form without having to model
   * the grammar's coin flips, and every canonical caption is also one of the random ones.
   */
  captions?: 'random' | 'canonical';
  range?: PixelRange;
  /** Subsamples per pixel side for anti-aliasing (default 4, i.e. 16 per pixel). */
  supersample?: number;
  background?: [number, number, number];
}

const SPLIT_STREAM: Record<ShapesSplit, number> = { train: 1, test: 2, heldout: 3 };
const MAX_ATTEMPTS = 1000;

/** Outlines at unit radius, centred on the origin, y pointing down. Circles are handled analytically. */
const OUTLINES: Record<Exclude<ShapeName, 'circle'>, ReadonlyArray<readonly [number, number]>> = {
  square: [[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]],
  triangle: [[0, -0.95], [0.95, 0.75], [-0.95, 0.75]],
  diamond: [[0, -1], [0.72, 0], [0, 1], [-0.72, 0]],
  star: Array.from({ length: 10 }, (_, k) => {
    const r = k % 2 === 0 ? 1 : 0.45, a = -Math.PI / 2 + (k * Math.PI) / 5;
    return [r * Math.cos(a), r * Math.sin(a)] as const;
  }),
  hexagon: Array.from({ length: 6 }, (_, k) => [0.95 * Math.cos((k * Math.PI) / 3), 0.95 * Math.sin((k * Math.PI) / 3)] as const),
  cross: [[-0.33, -0.9], [0.33, -0.9], [0.33, -0.33], [0.9, -0.33], [0.9, 0.33], [0.33, 0.33],
    [0.33, 0.9], [-0.33, 0.9], [-0.33, 0.33], [-0.9, 0.33], [-0.9, -0.33], [-0.33, -0.33]],
};
const CIRCLE_RADIUS = 0.9;

export function objectMatches(obj: Pick<SceneObject, 'shape' | 'colour' | 'size' | 'position'>, combo: AttributeCombo): boolean {
  return (combo.shape === undefined || combo.shape === obj.shape) &&
    (combo.colour === undefined || combo.colour === obj.colour) &&
    (combo.size === undefined || combo.size === obj.size) &&
    (combo.position === undefined || combo.position === obj.position);
}

/** True when some object of the scene matches one of the combinations. */
export function sceneContains(scene: Scene, combos: readonly AttributeCombo[]): boolean {
  return scene.objects.some((o) => combos.some((c) => objectMatches(o, c)));
}

/** Small helpers over one sample's private stream. */
class Draw {
  constructor(private readonly rng: Rng) {}
  int(n: number): number { return this.rng.integers(1, 0, n)[0]; }
  pick<T>(items: readonly T[]): T { return items[this.int(items.length)]; }
  chance(p: number): boolean { return this.rng.uniform(1)[0] < p; }
  between(lo: number, hi: number): number { return lo + (hi - lo) * this.rng.uniform(1)[0]; }
  shuffled<T>(items: readonly T[]): T[] {
    const a = [...items];
    for (let i = a.length - 1; i > 0; i--) { const j = this.int(i + 1); [a[i], a[j]] = [a[j], a[i]]; }
    return a;
  }
}

export class ShapesDataset implements Dataset<ShapesSample> {
  readonly length: number;
  readonly size: number;
  readonly seed: number;
  readonly split: ShapesSplit;
  readonly holdOut: readonly AttributeCombo[];
  private readonly minObjects: number;
  private readonly maxObjects: number;
  private readonly sizeInCaption: number;
  private readonly canonical: boolean;
  private readonly supersample: number;
  private readonly background: readonly [number, number, number];
  private readonly map: { scale: number; shift: number };

  constructor(private readonly options: ShapesOptions = {}) {
    this.seed = options.seed ?? 0;
    this.length = options.length ?? 10_000;
    this.size = options.size ?? 32;
    this.split = options.split ?? 'train';
    this.holdOut = options.holdOut ?? [];
    this.minObjects = options.minObjects ?? 1;
    this.maxObjects = options.maxObjects ?? 3;
    this.sizeInCaption = options.sizeInCaption ?? 0.5;
    const captions = options.captions ?? 'random';
    if (captions !== 'random' && captions !== 'canonical') throw new Error(`shapes: captions must be 'random' or 'canonical', got '${String(captions)}'`);
    this.canonical = captions === 'canonical';
    this.supersample = options.supersample ?? 4;
    this.background = options.background ?? [0, 0, 0];
    this.map = rangeMapper(options.range);
    if (!Number.isSafeInteger(this.seed) || this.seed < 0) throw new Error(`shapes: seed must be a non-negative integer, got ${this.seed}`);
    if (!Number.isInteger(this.length) || this.length < 0) throw new Error(`shapes: length must be a non-negative integer, got ${this.length}`);
    if (!Number.isInteger(this.size) || this.size < 24) throw new Error(`shapes: size must be an integer ≥ 24, got ${this.size}`);
    if (!(SPLIT_STREAM[this.split] > 0)) throw new Error(`shapes: split must be train, test or heldout, got '${this.split}'`);
    if (!(this.minObjects >= 1 && this.maxObjects <= 3 && this.minObjects <= this.maxObjects)) {
      throw new Error(`shapes: need 1 ≤ minObjects ≤ maxObjects ≤ 3, got ${this.minObjects}..${this.maxObjects}`);
    }
    if (!Number.isInteger(this.supersample) || this.supersample < 1) throw new Error(`shapes: supersample must be a positive integer`);
    for (const c of this.holdOut) this.checkCombo(c);
    if (this.split === 'heldout' && this.holdOut.length === 0) throw new Error(`shapes: the heldout split needs at least one holdOut combination`);
  }

  get(index: number): ShapesSample {
    const scene = this.scene(index);
    const image = renderScene(scene, { supersample: this.supersample, range: this.options.range });
    return { image, shape: [3, this.size, this.size], label: SHAPE_NAMES.indexOf(scene.objects[0].shape), caption: scene.caption, scene };
  }

  /** The scene of sample `index` without drawing it (cheap: use it for statistics and checks). */
  scene(index: number): Scene {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) {
      throw new RangeError(`shapes ${this.split}: index ${index} outside [0, ${this.length})`);
    }
    const draw = new Draw(new Rng(derivedSeed(this.seed, SPLIT_STREAM[this.split], index)));
    const count = this.minObjects + draw.int(this.maxObjects - this.minObjects + 1);
    const cells = draw.shuffled([0, 1, 2, 3, 4, 5, 6, 7, 8]).slice(0, count);
    // The held-out split forces one object (at a random slot) to carry a held-out combination.
    const forcedSlot = this.split === 'heldout' ? draw.int(count) : -1;
    const forced = forcedSlot >= 0 ? draw.pick(this.holdOut) : undefined;
    if (forced?.position !== undefined) {
      const cell = POSITION_NAMES.indexOf(forced.position);
      const clash = cells.indexOf(cell);
      if (clash >= 0) cells[clash] = cells[forcedSlot]; // swap so the forced slot gets its cell
      cells[forcedSlot] = cell;
    }
    // The forced object is drawn first so the others can keep colour+shape unique around it.
    const slots = new Array<SceneObject>(count);
    const drawn: SceneObject[] = [];
    const others = [...cells.keys()].filter((slot) => slot !== forcedSlot);
    const order = forcedSlot >= 0 ? [forcedSlot, ...others] : others;
    for (const slot of order) {
      slots[slot] = this.drawObject(draw, cells[slot], drawn, slot === forcedSlot ? forced : undefined);
      drawn.push(slots[slot]);
    }
    const objects = slots;
    const relations: SceneRelation[] = [];
    if (count >= 2) relations.push({ subject: 0, relation: pickRelation(draw, objects[0], objects[1]), object: 1 });
    if (count === 3) relations.push({ subject: 2, relation: pickRelation(draw, objects[2], objects[1]), object: 1 });
    const scene: Scene = { width: this.size, height: this.size, background: this.background, objects, relations, caption: '' };
    // The random draws above happen either way, so both caption styles describe the same images.
    if (this.canonical) Object.assign(scene, canonicalOrder(objects));
    scene.caption = captionOf(scene);
    return scene;
  }

  spec(): DatasetSpec {
    return { kind: 'shapes', options: { ...this.options } as Record<string, unknown> };
  }

  private drawObject(draw: Draw, cell: number, others: SceneObject[], forced: AttributeCombo | undefined): SceneObject {
    const position = POSITION_NAMES[cell];
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const shape = forced?.shape ?? draw.pick(SHAPE_NAMES);
      const colour = forced?.colour ?? draw.pick(COLOUR_NAMES);
      const size = forced?.size ?? draw.pick(SIZE_NAMES);
      const sizeInCaption = draw.chance(this.sizeInCaption);
      // Colour+shape identifies an object in the caption ("the blue square"), so it must be unique.
      if (others.some((o) => o.shape === shape && o.colour === colour)) continue;
      if (!forced && this.split !== 'heldout' && this.holdOut.some((c) => objectMatches({ shape, colour, size, position }, c))) continue;
      return this.place(draw, { shape, colour, size, position, cell, sizeInCaption });
    }
    throw new Error(`shapes: could not draw an object ${POSITION_NAMES[cell]} avoiding the held-out combinations ` +
      `${this.holdOut.map((c) => JSON.stringify(c)).join(', ')}: they exclude (nearly) everything there`);
  }

  private place(draw: Draw, a: { shape: ShapeName; colour: ColourName; size: SizeName; position: PositionName; cell: number; sizeInCaption: boolean }): SceneObject {
    const S = this.size;
    const col = a.cell % 3, row = Math.floor(a.cell / 3);
    const radius = SIZE_RADIUS[a.size] * S;
    // Small objects wander inside their cell; large ones barely can.
    const slack = Math.max(0, S / 6 - radius - 0.5);
    const cx = Math.floor((col + 0.5) * (S / 3) + draw.between(-slack, slack)) + 0.5;
    const cy = Math.floor((row + 0.5) * (S / 3) + draw.between(-slack, slack)) + 0.5;
    const [ux0, uy0, ux1, uy1] = unitBounds(a.shape);
    const clip = (v: number) => Math.min(Math.max(v, 0), S);
    return {
      shape: a.shape, colour: a.colour, rgb: COLOURS[a.colour], size: a.size, position: a.position,
      cell: [col, row], centre: [cx, cy], radius,
      bbox: [clip(cx + ux0 * radius), clip(cy + uy0 * radius), clip(cx + ux1 * radius), clip(cy + uy1 * radius)],
      sizeInCaption: a.sizeInCaption,
    };
  }

  private checkCombo(c: AttributeCombo): void {
    const known: Array<[keyof AttributeCombo, readonly string[]]> = [
      ['shape', SHAPE_NAMES], ['colour', COLOUR_NAMES], ['size', SIZE_NAMES], ['position', POSITION_NAMES]];
    const keys = Object.keys(c) as Array<keyof AttributeCombo>;
    if (keys.length === 0) throw new Error('shapes: an empty holdOut combination would hold out everything');
    for (const k of keys) {
      const allowed = known.find(([name]) => name === k)?.[1];
      if (!allowed) throw new Error(`shapes: unknown holdOut attribute '${k}' (use shape, colour, size, position)`);
      if (!allowed.includes(c[k] as string)) throw new Error(`shapes: unknown ${k} '${c[k]}' (known: ${allowed.join(', ')})`);
    }
  }
}

/** A relation that is true for (a, b); when both axes differ either may be said. */
function pickRelation(draw: Draw, a: SceneObject, b: SceneObject): RelationName {
  const options: RelationName[] = [];
  if (a.cell[1] !== b.cell[1]) options.push(a.cell[1] < b.cell[1] ? 'above' : 'below');
  if (a.cell[0] !== b.cell[0]) options.push(a.cell[0] < b.cell[0] ? 'left of' : 'right of');
  return draw.pick(options);
}

/** Objects in reading order with the relation the canonical caption states, every size mentioned. */
export function canonicalOrder(objects: readonly SceneObject[]): Pick<Scene, 'objects' | 'relations'> {
  const sorted = [...objects].sort((a, b) => a.cell[1] - b.cell[1] || a.cell[0] - b.cell[0]).map((o) => ({ ...o, sizeInCaption: true }));
  const say = (a: SceneObject, b: SceneObject): RelationName =>
    a.cell[1] !== b.cell[1] ? (a.cell[1] < b.cell[1] ? 'above' : 'below') : (a.cell[0] < b.cell[0] ? 'left of' : 'right of');
  const relations: SceneRelation[] = [];
  if (sorted.length >= 2) relations.push({ subject: 0, relation: say(sorted[0], sorted[1]), object: 1 });
  if (sorted.length === 3) relations.push({ subject: 2, relation: say(sorted[2], sorted[1]), object: 1 });
  return { objects: sorted, relations };
}

function mention(o: SceneObject): string {
  return `${o.sizeInCaption ? `${o.size} ` : ''}${o.colour} ${o.shape}`;
}

/** The caption grammar: one object gets its position, two a relation, three two relations around the middle one. */
export function captionOf(scene: Scene): string {
  const [a, b, c] = scene.objects;
  if (scene.objects.length === 1) return `${withArticle(mention(a))} ${POSITION_PHRASES[a.position]}`;
  const [r0, r1] = scene.relations;
  const first = `${withArticle(mention(a))} ${r0.relation} ${withArticle(mention(b))}`;
  if (scene.objects.length === 2) return first;
  return `${first}, and ${withArticle(mention(c))} ${r1.relation} the ${b.colour} ${b.shape}`;
}

/** Unit-radius bounds of a shape's outline: [x0, y0, x1, y1]. */
function unitBounds(shape: ShapeName): [number, number, number, number] {
  if (shape === 'circle') return [-CIRCLE_RADIUS, -CIRCLE_RADIUS, CIRCLE_RADIUS, CIRCLE_RADIUS];
  const pts = OUTLINES[shape];
  return [Math.min(...pts.map((p) => p[0])), Math.min(...pts.map((p) => p[1])),
    Math.max(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[1]))];
}

/** Even–odd rule: works for the concave star and cross as well as the convex outlines. */
function insidePolygon(xs: Float64Array, ys: Float64Array, px: number, py: number): boolean {
  let inside = false;
  for (let i = 0, j = xs.length - 1; i < xs.length; j = i++) {
    if ((ys[i] > py) !== (ys[j] > py) && px < xs[j] + ((py - ys[j]) * (xs[i] - xs[j])) / (ys[i] - ys[j])) inside = !inside;
  }
  return inside;
}

/**
 * Draws a scene into a CHW Float32Array. Anti-aliasing by supersampling: each pixel's coverage is the
 * fraction of an n×n grid of points inside the shape, and the colour is blended by that coverage.
 */
export function renderScene(scene: Scene, opts: { supersample?: number; range?: PixelRange } = {}): Float32Array {
  const W = scene.width, H = scene.height, plane = W * H;
  const n = opts.supersample ?? 4;
  const rgb = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) rgb.fill(scene.background[c] / 255, c * plane, (c + 1) * plane);
  for (const o of scene.objects) {
    const [cx, cy] = o.centre, r = o.radius;
    let inside: (x: number, y: number) => boolean;
    if (o.shape === 'circle') {
      const rr = (CIRCLE_RADIUS * r) ** 2;
      inside = (x, y) => (x - cx) ** 2 + (y - cy) ** 2 <= rr;
    } else {
      const pts = OUTLINES[o.shape];
      const xs = Float64Array.from(pts, (p) => cx + p[0] * r), ys = Float64Array.from(pts, (p) => cy + p[1] * r);
      inside = (x, y) => insidePolygon(xs, ys, x, y);
    }
    const [x0, y0, x1, y1] = o.bbox;
    for (let py = Math.floor(y0); py < Math.min(H, Math.ceil(y1)); py++) {
      for (let px = Math.floor(x0); px < Math.min(W, Math.ceil(x1)); px++) {
        let hits = 0;
        for (let sy = 0; sy < n; sy++) {
          for (let sx = 0; sx < n; sx++) if (inside(px + (sx + 0.5) / n, py + (sy + 0.5) / n)) hits++;
        }
        if (hits === 0) continue;
        const cover = hits / (n * n), at = py * W + px;
        for (let c = 0; c < 3; c++) rgb[c * plane + at] += (o.rgb[c] / 255 - rgb[c * plane + at]) * cover;
      }
    }
  }
  const { scale, shift } = rangeMapper(opts.range);
  if (scale !== 1 || shift !== 0) for (let i = 0; i < rgb.length; i++) rgb[i] = rgb[i] * scale + shift;
  return rgb;
}
