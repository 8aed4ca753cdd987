/**
 * PyTorch zip checkpoints (`torch.save` since 1.6; Stable Diffusion's `.ckpt` files), read without Python.
 *
 * Layout: `<archive>/data.pkl` (the pickled object), `<archive>/data/<key>` (raw little-endian storages),
 * `<archive>/version`, optionally `<archive>/byteorder`. In data.pkl each storage is a persistent id
 * ('storage', torch.<T>Storage, key, location, numel) and each tensor a call to
 * `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`.
 *
 * The restricted unpickler (pickle.ts) accepts exactly those rebuild functions, the storage types and
 * OrderedDict; a checkpoint that refers to anything else (a Lightning callback, `os.system`, …) is refused.
 * Tensors come back lazy: nothing is read from `data/` until `read()`.
 */
import * as path from 'node:path';
import { type DType, type Tensor, fromTypedArray } from '../../engine/index.js';
import { unpickle, UnpicklingError, type PickleGlobal } from './pickle.js';
import type { LazyTensor } from './tensor_source.js';
import { ZipReader } from './zip.js';

/** torch storage class → how its bytes are stored and the engine dtype they load as. */
const STORAGES: Record<string, { bytes: number; dtype: DType; decode: (b: Uint8Array, n: number) => Tensor['data'] }> = {
  FloatStorage: { bytes: 4, dtype: 'f32', decode: (b, n) => new Float32Array(b.buffer, b.byteOffset, n) },
  HalfStorage: { bytes: 2, dtype: 'f16', decode: (b, n) => new Uint16Array(b.buffer, b.byteOffset, n) },
  BFloat16Storage: { bytes: 2, dtype: 'bf16', decode: (b, n) => new Uint16Array(b.buffer, b.byteOffset, n) },
  DoubleStorage: { bytes: 8, dtype: 'f32', decode: (b, n) => Float32Array.from(new Float64Array(b.buffer, b.byteOffset, n)) },
  LongStorage: { bytes: 8, dtype: 'i64', decode: (b, n) => new BigInt64Array(b.buffer, b.byteOffset, n) },
  IntStorage: { bytes: 4, dtype: 'i32', decode: (b, n) => new Int32Array(b.buffer, b.byteOffset, n) },
  ShortStorage: { bytes: 2, dtype: 'i32', decode: (b, n) => Int32Array.from(new Int16Array(b.buffer, b.byteOffset, n)) },
  CharStorage: { bytes: 1, dtype: 'i32', decode: (b, n) => Int32Array.from(new Int8Array(b.buffer, b.byteOffset, n)) },
  ByteStorage: { bytes: 1, dtype: 'i32', decode: (b, n) => Int32Array.from(b.subarray(0, n)) },
  BoolStorage: { bytes: 1, dtype: 'bool', decode: (b, n) => Uint8Array.from(b.subarray(0, n), (v) => (v ? 1 : 0)) },
};

interface StorageRef {
  readonly kind: 'storage';
  readonly type: keyof typeof STORAGES;
  readonly entry: string;
  readonly numel: number;
}

/** A tensor inside the checkpoint: a strided view into one storage. */
class TorchTensorRef implements LazyTensor {
  readonly dtype: DType;

  constructor(private readonly zip: ZipReader, private readonly storage: StorageRef, private readonly offset: number,
              readonly shape: readonly number[], private readonly stride: readonly number[]) {
    this.dtype = STORAGES[storage.type].dtype;
    let last = offset;
    for (let i = 0; i < shape.length; i++) {
      if (shape[i] === 0) return;
      if (stride[i] < 0) throw new UnpicklingError(`${storage.entry}: negative strides are not supported`);
      last += (shape[i] - 1) * stride[i];
    }
    if (last >= storage.numel) {
      throw new UnpicklingError(`tensor [${shape.join(', ')}] (offset ${offset}, stride [${stride.join(', ')}]) reaches past its storage ${storage.entry} of ${storage.numel} elements`);
    }
  }

  read(): Tensor {
    const { bytes, decode } = STORAGES[this.storage.type];
    const shape = [...this.shape];
    const numel = shape.reduce((a, d) => a * d, 1);
    if (numel === 0) return fromTypedArray(decode(new Uint8Array(8), 0), shape, this.dtype);
    // The span of storage elements the view touches.
    let span = 1;
    for (let i = 0; i < shape.length; i++) span += (shape[i] - 1) * this.stride[i];
    const raw = new Uint8Array(span * bytes);
    this.zip.readRange(this.storage.entry, this.offset * bytes, raw);
    const values = decode(raw, span);
    if (span === numel && isContiguous(shape, this.stride)) return fromTypedArray(values, shape, this.dtype);
    // A strided view (a transpose, a slice saved as is): gather it into dense row-major order.
    const out = new (values.constructor as new (n: number) => typeof values)(numel);
    const idx = new Array<number>(shape.length).fill(0);
    for (let i = 0; i < numel; i++) {
      let src = 0;
      for (let d = 0; d < shape.length; d++) src += idx[d] * this.stride[d];
      (out as unknown as number[])[i] = (values as unknown as number[])[src];
      for (let d = shape.length - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
    return fromTypedArray(out, shape, this.dtype);
  }
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) return false;
    expect *= shape[i];
  }
  return true;
}

const intList = (v: unknown, what: string): number[] => {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
    throw new UnpicklingError(`${what} must be a tuple of non-negative integers, got ${String(v)}`);
  }
  return v as number[];
};

/** The only globals a checkpoint may name. */
function torchGlobals(zip: ZipReader): Map<string, PickleGlobal> {
  const g = new Map<string, PickleGlobal>();
  const add = (name: string, def: Omit<PickleGlobal, 'qualifiedName'>) => g.set(name, { qualifiedName: name, ...def });
  const rebuild = (args: unknown[]): TorchTensorRef => {
    const [storage, offset, size, stride] = args as [StorageRef, number, unknown, unknown];
    if (!storage || (storage as StorageRef).kind !== 'storage') throw new UnpicklingError('_rebuild_tensor: the first argument is not a storage');
    if (typeof offset !== 'number') throw new UnpicklingError('_rebuild_tensor: bad storage offset');
    const shape = intList(size, 'tensor size'), strides = intList(stride, 'tensor stride');
    if (shape.length !== strides.length) throw new UnpicklingError(`tensor size [${shape}] and stride [${strides}] differ in length`);
    return new TorchTensorRef(zip, storage, offset, shape, strides);
  };
  const asTensor = (t: unknown, what: string): TorchTensorRef => {
    if (!(t instanceof TorchTensorRef)) throw new UnpicklingError(`${what}: expected a tensor`);
    return t;
  };
  add('collections.OrderedDict', { call: () => new Map(), build: (obj) => obj }); // `_metadata` state: not needed
  add('torch._utils._rebuild_tensor_v2', { call: rebuild });
  add('torch._utils._rebuild_tensor', { call: rebuild });
  add('torch._utils._rebuild_parameter', { call: (a) => asTensor(a[0], '_rebuild_parameter') });
  add('torch._utils._rebuild_parameter_with_state', { call: (a) => asTensor(a[0], '_rebuild_parameter_with_state') });
  add('torch._tensor._rebuild_from_type_v2', {
    call: (a) => {
      const [fn, type, args] = a as [PickleGlobal, PickleGlobal, unknown[]];
      if (!type || !['torch.Tensor', 'torch.nn.parameter.Parameter'].includes(type.qualifiedName)) {
        throw new UnpicklingError(`_rebuild_from_type_v2: tensor subclass ${type?.qualifiedName} is not allowed`);
      }
      if (!fn?.call) throw new UnpicklingError('_rebuild_from_type_v2: no rebuild function');
      return fn.call(args);
    },
  });
  add('torch.Tensor', {});
  add('torch.nn.parameter.Parameter', {});
  add('torch.Size', { call: (a) => intList(a[0], 'torch.Size') });
  for (const name of Object.keys(STORAGES)) add(`torch.${name}`, {});
  return g;
}

export interface TorchCheckpoint {
  tensors: Map<string, LazyTensor>;
  otherKeys: string[];
  close(): void;
}

/**
 * Open a torch zip checkpoint: unpickle data.pkl (restricted), take the tensor dict (`state_dict` when the
 * top level has one, as Lightning checkpoints do, else the top level itself).
 */
export function readTorchCheckpoint(file: string): TorchCheckpoint {
  const label = path.basename(file);
  const zip = ZipReader.open(file);
  try {
    const pkls = zip.entries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
    if (pkls.length !== 1) {
      throw new UnpicklingError(`${label}: not a torch.save archive (expected one <archive>/data.pkl, found ${pkls.length})`);
    }
    const root = pkls[0].name.slice(0, -'data.pkl'.length);
    const order = zip.get(`${root}byteorder`);
    if (order && new TextDecoder().decode(zip.read(order.name)).trim() !== 'little') {
      throw new UnpicklingError(`${label}: big-endian checkpoints are not supported`);
    }
    const globals = torchGlobals(zip);
    const persistentLoad = (pid: unknown): StorageRef => {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) throw new UnpicklingError(`${label}: unexpected persistent id ${String(pid)}`);
      const [, type, key, , numel] = pid as [string, PickleGlobal, string, string, number];
      const name = type?.qualifiedName?.replace(/^torch\./, '');
      if (!name || !(name in STORAGES)) throw new UnpicklingError(`${label}: unsupported storage type ${type?.qualifiedName}`);
      const entry = `${root}data/${key}`;
      const e = zip.get(entry);
      if (!e) throw new UnpicklingError(`${label}: storage ${key} is missing from the archive (truncated file?)`);
      const need = numel * STORAGES[name].bytes;
      if (e.size < need) throw new UnpicklingError(`${label}: storage ${key} holds ${e.size} bytes, ${numel} × ${name} need ${need}`);
      return { kind: 'storage', type: name, entry, numel };
    };
    const obj = unpickle(zip.read(pkls[0].name), { globals, persistentLoad, source: `${label}: ${pkls[0].name}` });

    if (!(obj instanceof Map)) throw new UnpicklingError(`${label}: the checkpoint holds ${describe(obj)}, not a dict of tensors`);
    const inner = obj.get('state_dict');
    const dict = inner instanceof Map ? inner : obj;
    const tensors = new Map<string, LazyTensor>();
    // Lightning's top level (global_step, epoch, …) and any non-tensor entries of the dict are reported, not loaded.
    const otherKeys = dict === obj ? [] : [...obj.keys()].filter((k) => k !== 'state_dict').map(String);
    for (const [k, v] of dict) {
      if (v instanceof TorchTensorRef) tensors.set(String(k), v);
      else otherKeys.push(String(k));
    }
    return { tensors, otherKeys, close: () => zip.close() };
  } catch (err) {
    zip.close();
    throw err;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof TorchTensorRef) return 'a single tensor';
  return typeof v;
}
