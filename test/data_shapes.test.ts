/** The procedural Shapes dataset: determinism, caption/scene/pixel agreement, held-out combinations. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ShapesDataset, COLOURS, COLOUR_NAMES, SHAPE_NAMES, sceneContains, shapesCaptionVariants, type Scene, type SceneObject,
} from '../src/data/index.js';

const COLOUR_RE = COLOUR_NAMES.join('|');
const SHAPE_RE = SHAPE_NAMES.join('|');
/** "[a|an|the] [small|large] <colour> <shape>" in caption order. */
const MENTION = new RegExp(`\\b(a|an|the) (?:(small|large) )?(${COLOUR_RE}) (${SHAPE_RE})\\b`, 'g');

function mentions(caption: string) {
  return [...caption.matchAll(MENTION)].map((m) => ({ article: m[1], size: m[2], colour: m[3], shape: m[4] }));
}

/** RGB in [0, 1] of the pixel at (x, y). */
function pixel(image: Float32Array, size: number, x: number, y: number): number[] {
  const at = Math.floor(y) * size + Math.floor(x);
  return [0, 1, 2].map((c) => (image[c * size * size + at] + 1) / 2);
}

test('shapes: same seed gives identical pixels and captions, in any access order', () => {
  const a = new ShapesDataset({ seed: 7, size: 32, length: 100 });
  const b = new ShapesDataset({ seed: 7, size: 32, length: 100 });
  const later = b.get(17); // out of order on purpose
  for (let i = 0; i < 20; i++) {
    const sa = a.get(i), sb = b.get(i);
    assert.equal(sa.caption, sb.caption);
    assert.deepEqual(sa.image, sb.image);
    assert.deepEqual(sa.scene, sb.scene);
  }
  assert.deepEqual(a.get(17).image, later.image);
  const other = new ShapesDataset({ seed: 8, size: 32, length: 100 });
  assert.notEqual([0, 1, 2, 3].map((i) => other.scene(i).caption).join(), [0, 1, 2, 3].map((i) => a.scene(i).caption).join());
  // Train and test are different streams.
  const testSplit = new ShapesDataset({ seed: 7, split: 'test' });
  assert.notEqual(testSplit.scene(0).caption + testSplit.scene(1).caption, a.scene(0).caption + a.scene(1).caption);
});

test('shapes: every caption names exactly the scene objects, with true relations and positions', () => {
  const ds = new ShapesDataset({ seed: 3, size: 32, length: 400 });
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < ds.length; i++) {
    const scene = ds.scene(i);
    const objs = scene.objects;
    counts[objs.length]++;
    const named = mentions(scene.caption);
    // 1 and 2 objects are each named once; with 3 the middle one is named again as "the <colour> <shape>".
    assert.equal(named.length, objs.length === 3 ? 4 : objs.length, scene.caption);
    objs.forEach((o, k) => {
      const m = named[k];
      assert.equal(m.colour, o.colour, scene.caption);
      assert.equal(m.shape, o.shape, scene.caption);
      assert.equal(m.size, o.sizeInCaption ? o.size : undefined, scene.caption);
      assert.equal(m.article, /^[aeiou]/.test(m.size ?? m.colour) ? 'an' : 'a', scene.caption);
    });
    if (objs.length === 3) assert.deepEqual([named[3].article, named[3].colour, named[3].shape], ['the', objs[1].colour, objs[1].shape]);
    const ids = new Set(objs.map((o) => `${o.colour} ${o.shape}`));
    assert.equal(ids.size, objs.length, 'colour+shape identifies each object');

    if (objs.length === 1) assert.ok(scene.caption.endsWith(objs[0].position), scene.caption);
    for (const r of scene.relations) {
      assert.ok(scene.caption.includes(` ${r.relation} `), scene.caption);
      const s = objs[r.subject].centre, o = objs[r.object].centre;
      const truth = { above: s[1] < o[1], below: s[1] > o[1], 'left of': s[0] < o[0], 'right of': s[0] > o[0] }[r.relation];
      assert.ok(truth, `${scene.caption}: ${r.relation} is false for centres ${s} / ${o}`);
    }
    for (const o of objs) {
      const [x0, y0, x1, y1] = o.bbox;
      assert.ok(0 <= x0 && x0 < o.centre[0] && o.centre[0] < x1 && x1 <= 32, `bbox ${o.bbox}`);
      assert.ok(0 <= y0 && y0 < o.centre[1] && o.centre[1] < y1 && y1 <= 32, `bbox ${o.bbox}`);
      const col = o.cell[0], row = o.cell[1];
      const expected = [['top left', 'top', 'top right'], ['left', 'centre', 'right'], ['bottom left', 'bottom', 'bottom right']][row][col];
      assert.equal(o.position, expected);
    }
  }
  assert.ok(counts[1] > 50 && counts[2] > 50 && counts[3] > 50, `object counts ${counts}`);
});

function checkPixels(scene: Scene, image: Float32Array): void {
  const S = scene.width;
  for (const o of scene.objects) {
    const got = pixel(image, S, o.centre[0], o.centre[1]);
    got.forEach((v, c) => assert.ok(Math.abs(v * 255 - COLOURS[o.colour][c]) < 1e-3,
      `${scene.caption}: centre of the ${o.colour} ${o.shape} is ${got.map((x) => Math.round(x * 255))}`));
  }
  // Outside every box the image is background.
  const inBox = (x: number, y: number, o: SceneObject) => x + 1 > o.bbox[0] && x < o.bbox[2] && y + 1 > o.bbox[1] && y < o.bbox[3];
  for (let y = 0; y < S; y += 3) {
    for (let x = 0; x < S; x += 3) {
      if (scene.objects.some((o) => inBox(x, y, o))) continue;
      assert.deepEqual(pixel(image, S, x, y), [0, 0, 0], `(${x}, ${y}) in ${scene.caption}`);
    }
  }
}

test('shapes: the pixel at each object centre has the named colour; outside boxes is background', () => {
  for (const size of [32, 64]) {
    const ds = new ShapesDataset({ seed: 11, size, length: size === 32 ? 150 : 40 });
    let partial = 0;
    for (let i = 0; i < ds.length; i++) {
      const s = ds.get(i);
      assert.deepEqual(s.shape, [3, size, size]);
      assert.equal(s.label, SHAPE_NAMES.indexOf(s.scene.objects[0].shape));
      checkPixels(s.scene, s.image);
      // Anti-aliased edges: partial coverage gives red values that are neither background nor a palette colour.
      const reds = new Set([0, ...COLOUR_NAMES.map((c) => COLOURS[c][0])]);
      for (let k = 0; k < size * size; k++) if (!reds.has(Math.round(((s.image[k] + 1) / 2) * 255 * 1000) / 1000)) partial++;
    }
    assert.ok(partial > 0, 'edges are anti-aliased');
  }
  const unit = new ShapesDataset({ seed: 11, range: '[0,1]' }).get(0).image;
  assert.ok(unit.every((v) => v >= 0 && v <= 1));
});

test('shapes: held-out combinations are absent from train and test, present in every held-out sample', () => {
  const holdOut = [{ shape: 'star', colour: 'purple' }, { shape: 'circle', size: 'large', position: 'centre' }] as const;
  const opts = { seed: 5, length: 2000, holdOut: [...holdOut] };
  const train = new ShapesDataset({ ...opts, split: 'train' });
  const test_ = new ShapesDataset({ ...opts, split: 'test' });
  const held = new ShapesDataset({ ...opts, split: 'heldout', length: 300 });
  let purpleThings = 0, stars = 0;
  for (let i = 0; i < train.length; i++) {
    const s = train.scene(i);
    assert.ok(!sceneContains(s, [...holdOut]), `train ${i}: ${s.caption}`);
    assert.ok(!/purple star/.test(s.caption), s.caption);
    purpleThings += s.objects.filter((o) => o.colour === 'purple').length;
    stars += s.objects.filter((o) => o.shape === 'star').length;
  }
  // Only the combination is removed, not its parts.
  assert.ok(purpleThings > 100 && stars > 100, `${purpleThings} purple objects, ${stars} stars`);
  for (let i = 0; i < 500; i++) assert.ok(!sceneContains(test_.scene(i), [...holdOut]));
  const forced = [0, 0];
  for (let i = 0; i < held.length; i++) {
    const s = held.scene(i);
    assert.ok(sceneContains(s, [...holdOut]), `heldout ${i}: ${s.caption}`);
    if (sceneContains(s, [holdOut[0]])) forced[0]++;
    if (sceneContains(s, [holdOut[1]])) forced[1]++;
  }
  assert.ok(forced[0] > 50 && forced[1] > 50, `both combinations are held out: ${forced}`);
  checkPixels(held.scene(0), held.get(0).image);
});

test('shapes: bad options fail clearly', () => {
  assert.throws(() => new ShapesDataset({ holdOut: [{ colour: 'mauve' as 'red' }] }), /unknown colour 'mauve'/);
  assert.throws(() => new ShapesDataset({ split: 'heldout' }), /needs at least one holdOut/);
  assert.throws(() => new ShapesDataset({ size: 8 }), /size must be an integer ≥ 24/);
  const noCentre = new ShapesDataset({ holdOut: [{ position: 'centre' }], minObjects: 3, maxObjects: 3, length: 50 });
  assert.throws(() => { for (let i = 0; i < 50; i++) noCentre.scene(i); }, /could not draw an object centre avoiding/);
  assert.throws(() => new ShapesDataset({ length: 5 }).get(5), RangeError);
});

test('shapes: canonical captions describe the same images in one fixed form, one of the random variants', () => {
  const random = new ShapesDataset({ seed: 5, size: 32, length: 300 });
  const canonical = new ShapesDataset({ seed: 5, size: 32, length: 300, captions: 'canonical' });
  let three = 0;
  for (let i = 0; i < 300; i++) {
    const r = random.scene(i), c = canonical.scene(i);
    // Same objects (as a set), so the same pixels.
    const key = (o: SceneObject) => `${o.cell}|${o.colour}|${o.shape}|${o.size}|${o.centre}`;
    assert.deepEqual(c.objects.map(key).sort(), r.objects.map(key).sort());
    if (i < 5) assert.deepEqual(canonical.get(i).image, random.get(i).image);
    assert.ok(shapesCaptionVariants(r).includes(c.caption), c.caption);
    // Reading order, every size stated, the vertical relation whenever the rows differ.
    for (let k = 1; k < c.objects.length; k++) {
      const [a, b] = [c.objects[k - 1].cell, c.objects[k].cell];
      assert.ok(a[1] < b[1] || (a[1] === b[1] && a[0] < b[0]), c.caption);
    }
    assert.equal(mentions(c.caption).filter((m) => m.article !== 'the').every((m) => m.size !== undefined), true, c.caption);
    for (const rel of c.relations) {
      const [s, o] = [c.objects[rel.subject].cell, c.objects[rel.object].cell];
      assert.equal(rel.relation, s[1] !== o[1] ? (s[1] < o[1] ? 'above' : 'below') : (s[0] < o[0] ? 'left of' : 'right of'));
    }
    if (c.objects.length === 3) three++;
  }
  assert.ok(three > 50);
  assert.throws(() => new ShapesDataset({ captions: 'fancy' as 'random' }), /captions must be 'random' or 'canonical', got 'fancy'/);
});
