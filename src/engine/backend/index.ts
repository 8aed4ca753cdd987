/**
 * Backend selection. `VSS_BACKEND=js|native` picks explicitly; by default the native addon is used when
 * it loads, with every kernel it does not provide falling back to the TypeScript version.
 */
import type { Kernels } from './kernels.js';
import { jsKernels } from './js/index.js';
import { loadNativeKernels } from './native.js';

export type BackendName = 'js' | 'native';

let nativeCache: Kernels | null | undefined;

function nativeBackend(): Kernels | null {
  if (nativeCache === undefined) {
    const partial = loadNativeKernels();
    nativeCache = partial ? ({ ...jsKernels, ...partial, name: 'native' } as Kernels) : null;
  }
  return nativeCache;
}

function initialBackend(): Kernels {
  const want = process.env.VSS_BACKEND;
  if (want === 'js') return jsKernels;
  const native = nativeBackend();
  if (want === 'native' && !native) {
    throw new Error('VSS_BACKEND=native but the native addon did not load (run `npm install` to build it)');
  }
  if (want !== undefined && want !== 'native') {
    throw new Error(`VSS_BACKEND must be "js" or "native", got "${want}"`);
  }
  return native ?? jsKernels;
}

/** The kernels every op calls. Swapped by setBackend (tests use it to cross-check the two). */
export let K: Kernels = initialBackend();

export function setBackend(name: BackendName): void {
  if (name === 'js') { K = jsKernels; return; }
  const native = nativeBackend();
  if (!native) throw new Error('the native addon is not available');
  K = native;
}

export function backendName(): BackendName { return K.name; }
export function nativeAvailable(): boolean { return nativeBackend() !== null; }
export { jsKernels };
