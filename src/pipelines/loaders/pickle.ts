/**
 * A restricted unpickler: Python's pickle virtual machine (protocols 2–5, the opcodes `torch.save` and
 * `pickle.dumps` emit for plain data), where every global reference goes through an allow-list.
 *
 * Python's own unpickler imports whatever module a pickle names and calls it — that is how a pickled
 * "model" runs `os.system`. Here nothing is imported or called: a GLOBAL resolves only to objects the
 * caller registered (`globals`), anything else stops the load with the module and name in the error.
 * Values come back as plain JS: None → null, bool, int → number (bigint beyond 2^53), float, str, bytes →
 * Uint8Array, list and tuple → arrays, dict → Map.
 *
 * Opcode semantics: CPython's Lib/pickle.py and pickletools.py (the documented format).
 */

export class UnpicklingError extends Error {
  override name = 'UnpicklingError';
}

/** A callable a pickle may REDUCE with: gets the argument tuple, returns the value. */
export interface PickleGlobal {
  readonly qualifiedName: string;
  call?(args: unknown[]): unknown;
  /** BUILD on an object this global made: apply `state` (default: refuse non-empty state). */
  build?(obj: unknown, state: unknown): unknown;
}

export interface UnpickleOptions {
  /** `module.name` → the object a GLOBAL resolves to. Anything not listed is refused. */
  globals: ReadonlyMap<string, PickleGlobal>;
  /** BINPERSID: the persistent id (e.g. torch's storage tuple) → the object it stands for. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Names the pickle in errors. */
  source?: string;
}

const MARK = Symbol('mark');

/** Objects made by REDUCE remember their maker, so BUILD knows whom to ask. */
const MADE_BY = new WeakMap<object, PickleGlobal>();

export function unpickle(bytes: Uint8Array, opts: UnpickleOptions): unknown {
  const src = opts.source ?? 'pickle';
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8');
  let pos = 0;

  const fail = (msg: string): never => { throw new UnpicklingError(`${src}: ${msg} (at byte ${pos})`); };
  const need = (n: number) => { if (pos + n > bytes.length) fail(`truncated: needs ${n} more bytes`); };
  const u8 = () => { need(1); return bytes[pos++]; };
  const u16 = () => { need(2); const v = view.getUint16(pos, true); pos += 2; return v; };
  const i32 = () => { need(4); const v = view.getInt32(pos, true); pos += 4; return v; };
  const u32 = () => { need(4); const v = view.getUint32(pos, true); pos += 4; return v; };
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(bytes.length)) fail(`length ${v} is beyond the end of the data`);
    return Number(v);
  };
  const take = (n: number) => { need(n); const b = bytes.subarray(pos, pos + n); pos += n; return b; };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated text line');
    const s = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = () => { if (stack.length === 0 || stack[stack.length - 1] === MARK) fail('stack underflow'); return stack.pop(); };
  const top = () => { if (stack.length === 0) fail('stack underflow'); return stack[stack.length - 1]; };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail('no MARK to pop to');
    const items = stack.splice(m!);
    items.shift(); // the MARK itself
    return items;
  };
  const pushMark = () => { marks.push(stack.length); stack.push(MARK); };
  const resolve = (module: string, name: string): PickleGlobal => {
    const g = opts.globals.get(`${module}.${name}`);
    if (!g) {
      throw new UnpicklingError(`${src}: refers to ${module}.${name}, which is not allowed: only tensors and plain containers are ` +
        `rebuilt (allowed: ${[...opts.globals.keys()].join(', ')})`);
    }
    return g;
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) (target as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };
  const longFromBytes = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: { const proto = u8(); if (proto > 5) fail(`unsupported pickle protocol ${proto}`); break; } // PROTO
      case 0x95: pos += 8; break; // FRAME: a length hint only
      case 0x2e: { // STOP
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack`);
        return stack[0];
      }
      case 0x28: pushMark(); break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(longFromBytes(take(u8()))); break; // LONG1
      case 0x8b: { const n = u32(); stack.push(longFromBytes(take(n))); break; } // LONG4
      case 0x47: { need(8); stack.push(view.getFloat64(pos, false)); pos += 8; break; } // BINFLOAT (big-endian)
      case 0x58: { const n = u32(); stack.push(utf8.decode(take(n))); break; } // BINUNICODE
      case 0x8c: { const n = u8(); stack.push(utf8.decode(take(n))); break; } // SHORT_BINUNICODE
      case 0x8d: { const n = u64(); stack.push(utf8.decode(take(n))); break; } // BINUNICODE8
      case 0x55: { const n = u8(); stack.push(latin1.decode(take(n))); break; } // SHORT_BINSTRING
      case 0x54: { const n = u32(); stack.push(latin1.decode(take(n))); break; } // BINSTRING
      case 0x43: { const n = u8(); stack.push(take(n).slice()); break; } // SHORT_BINBYTES
      case 0x42: { const n = u32(); stack.push(take(n).slice()); break; } // BINBYTES
      case 0x8e: { const n = u64(); stack.push(take(n).slice()); break; } // BINBYTES8
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(), a = pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(), b = pop(), a = pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x64: { const m = new Map(); setItems(m, popMark()); stack.push(m); break; } // DICT
      case 0x61: { const v = pop(); const l = top(); if (!Array.isArray(l)) fail('APPEND to a non-list'); (l as unknown[]).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); const l = top(); if (!Array.isArray(l)) fail('APPENDS to a non-list'); (l as unknown[]).push(...items); break; } // APPENDS
      case 0x73: { const v = pop(), k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) fail(`memo key ${k} was never stored`);
        stack.push(memo.get(k));
        break;
      }
      case 0x63: { const module = line(), name = line(); stack.push(resolve(module, name)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(resolve(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        if (!isGlobal(fn) || !fn.call) fail(`REDUCE on something that cannot be called${isGlobal(fn) ? ` (${fn.qualifiedName})` : ''}`);
        if (!Array.isArray(args)) fail('REDUCE arguments are not a tuple');
        const g = fn as PickleGlobal;
        const out = g.call!(args as unknown[]);
        if (out !== null && typeof out === 'object') MADE_BY.set(out, g);
        stack.push(out);
        break;
      }
      case 0x81: { // NEWOBJ: cls.__new__(cls, *args) — treated like a call to cls
        const args = pop(), cls = pop();
        if (!isGlobal(cls) || !cls.call || !Array.isArray(args)) fail('NEWOBJ on something that cannot be constructed');
        const out = (cls as PickleGlobal).call!(args as unknown[]);
        if (out !== null && typeof out === 'object') MADE_BY.set(out, cls as PickleGlobal);
        stack.push(out);
        break;
      }
      case 0x62: { // BUILD: obj.__setstate__(state)
        const state = pop(), obj = top();
        const maker = obj !== null && typeof obj === 'object' ? MADE_BY.get(obj) : undefined;
        if (maker?.build) stack[stack.length - 1] = maker.build(obj, state);
        else if (!isEmptyState(state)) fail(`BUILD with state on ${maker ? maker.qualifiedName : 'a plain value'}`);
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) fail('persistent ids are not expected here');
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      default: {
        const ch = op >= 0x20 && op < 0x7f ? ` '${String.fromCharCode(op)}'` : '';
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}${ch}`);
      }
    }
  }
}

function isGlobal(v: unknown): v is PickleGlobal {
  return v !== null && typeof v === 'object' && typeof (v as PickleGlobal).qualifiedName === 'string';
}

function isEmptyState(s: unknown): boolean {
  return s === null || (s instanceof Map && s.size === 0) || (Array.isArray(s) && s.every(isEmptyState));
}
