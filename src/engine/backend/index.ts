/**
 * Backend selection. `VSS_BACKEND=js|native` picks explicitly; by default the native addon is used when
 * it loads, with every kernel it does not provide falling back to the TypeScript version.
 */
import type { Kernels } from './kernels.js';
import { jsKernels } from './js/index.js';
import { loadNativeKernels, nativeMatmulPrecision, setNativeMatmulPrecision } from './native.js';

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

export type MatmulPrecision = 'f32' | 'bf16';

/**
 * How matrix products (matmul, bmm, linear) multiply: 'f32' (the default) or 'bf16' — operands rounded to
 * bfloat16, products summed in f32, about twice the f32 speed on CPUs with AVX512-BF16 and a relative error
 * of a few 1e-3 (bench/RESULTS.md). Process-wide, like PyTorch's set_float32_matmul_precision. Convolutions,
 * attention and products with ≤ 4 rows stay f32. Throws, naming the reason, where bf16 cannot run: the JS
 * backend, a CPU without AVX512-BF16, or the avx2/portable kernel path.
 */
export function setMatmulPrecision(precision: MatmulPrecision): void {
  if (precision !== 'f32' && precision !== 'bf16') {
    throw new Error(`matmul precision must be "f32" or "bf16", got ${JSON.stringify(precision)}`);
  }
  if (precision === 'bf16' && K.name !== 'native') {
    throw new Error('bf16 matmul is not available: it needs the native backend (active: js)');
  }
  if (nativeBackend()) setNativeMatmulPrecision(precision);
}

/** The precision matrix products run at now (always 'f32' on the JS backend). */
export function getMatmulPrecision(): MatmulPrecision {
  return K.name === 'native' ? nativeMatmulPrecision() : 'f32';
}
export function nativeAvailable(): boolean { return nativeBackend() !== null; }
export { jsKernels };
