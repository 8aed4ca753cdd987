/**
 * Every caption the Shapes grammar (src/data/shapes.ts, `captionOf`) could have given a scene: the
 * dataset picks one at random, the size mention (per object), the order in which objects are mentioned
 * and the relation (when two objects differ in row and column, "above" and "left of" are both true).
 * A captioner cannot know which one was drawn, so evaluation counts a caption right when it is any of them.
 */
import { type RelationName, type Scene, type SceneObject, type SceneRelation, captionOf } from './shapes.js';

/** Relations that are true of a and b (what pickRelation in shapes.ts chooses from). */
export function trueRelations(a: Pick<SceneObject, 'cell'>, b: Pick<SceneObject, 'cell'>): RelationName[] {
  const out: RelationName[] = [];
  if (a.cell[1] !== b.cell[1]) out.push(a.cell[1] < b.cell[1] ? 'above' : 'below');
  if (a.cell[0] !== b.cell[0]) out.push(a.cell[0] < b.cell[0] ? 'left of' : 'right of');
  return out;
}

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((x, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [x, ...rest]));
}

function product<T>(lists: readonly (readonly T[])[]): T[][] {
  return lists.reduce<T[][]>((acc, list) => acc.flatMap((prefix) => list.map((x) => [...prefix, x])), [[]]);
}

/**
 * All valid captions of a scene, the scene's own caption first, no duplicates (at most 3! · 2² · 2³ = 192
 * for three objects). Object order follows the grammar: with three objects the second is the one the other
 * two are placed relative to.
 */
export function shapesCaptionVariants(scene: Scene): string[] {
  const out = new Set<string>([scene.caption]);
  const n = scene.objects.length;
  for (const order of permutations(scene.objects)) {
    // Relations: (0 r 1) and, with three objects, (2 r 1).
    const pairs: Array<[number, number]> = n >= 2 ? (n === 3 ? [[0, 1], [2, 1]] : [[0, 1]]) : [];
    const relationChoices = pairs.map(([s, o]) => trueRelations(order[s], order[o]));
    for (const relations of product(relationChoices)) {
      for (const sizes of product(order.map(() => [false, true]))) {
        const objects = order.map((o, k) => ({ ...o, sizeInCaption: sizes[k] }));
        const rel: SceneRelation[] = pairs.map(([s, o], k) => ({ subject: s, relation: relations[k], object: o }));
        out.add(captionOf({ ...scene, objects, relations: rel }));
      }
    }
    if (n === 1) break;
  }
  return [...out];
}
