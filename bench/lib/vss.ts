/**
 * Loads the VSS side at run time. The modules are imported by URL (not by a static import) so that the
 * bench compiles and its peer columns run even while parts of the engine are missing or broken; the
 * shapes of what is used are declared here against the kernel contract.
 */
import type { Kernels } from '../../src/engine/backend/kernels.js';

export interface BackendModule {
  readonly K: Kernels;
  setBackend(name: 'js' | 'native'): void;
  backendName(): 'js' | 'native';
  nativeAvailable(): boolean;
}

export interface NativeModule {
  setNumThreads?: (n: number) => void;
  getNumThreads?: () => number;
  /** the SIMD path in use ('avx512' | 'avx2' | 'portable'), null when the addon is not loaded */
  cpuFeatures?: () => string | null;
  setSimdPath?: (path: 'avx512' | 'avx2' | 'portable') => boolean;
  /** f32 or bf16 products in the GEMM; throws, naming the reason, where bf16 cannot run */
  setNativeMatmulPrecision?: (precision: 'f32' | 'bf16') => void;
}

/** The slice of the public op API that the dispatch row uses. */
export interface EngineApi {
  tensor?: (data: unknown, opts?: unknown) => unknown;
  add?: (a: unknown, b: unknown) => unknown;
}

export interface Vss {
  backend: BackendModule;
  native: NativeModule | null;
  nativeError: string | null;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

const url = (rel: string): string => new URL(rel, import.meta.url).href;

export async function loadVss(): Promise<{ vss: Vss | null; error: string | null }> {
  let backend: BackendModule;
  try {
    backend = (await import(url('../../src/engine/backend/index.js'))) as BackendModule;
  } catch (e) {
    return { vss: null, error: `cannot load src/engine/backend/index.ts: ${errText(e)}` };
  }
  let native: NativeModule | null = null;
  let nativeError: string | null = null;
  try {
    native = (await import(url('../../src/engine/backend/native.js'))) as NativeModule;
    if (typeof native.setNumThreads !== 'function') nativeError = 'native.ts exports no setNumThreads';
  } catch (e) {
    nativeError = `cannot load src/engine/backend/native.ts: ${errText(e)}`;
  }
  return { vss: { backend, native, nativeError }, error: null };
}

export async function loadApi(): Promise<{ api: EngineApi | null; error: string | null }> {
  try {
    const api = (await import(url('../../src/engine/index.js'))) as EngineApi;
    if (typeof api.tensor !== 'function' || typeof api.add !== 'function') {
      return { api: null, error: 'src/engine/index.ts exports no tensor/add' };
    }
    return { api, error: null };
  } catch (e) {
    return { api: null, error: `cannot load src/engine/index.ts: ${errText(e)}` };
  }
}
