#!/usr/bin/python3
"""Tiny pickled PyTorch checkpoints for test/ckpt_unpickler.test.ts (run with Debian's python3-torch).

    /usr/bin/python3 scripts/make_ckpt_fixture.py

Writes test/fixtures/ckpt/:
  tiny.ckpt          torch.save (zip, pickle protocol 2) of a Lightning-style {"state_dict", "global_step", ...}
                     with f32/f16/bf16/f64/i64/bool tensors, a transposed view and a slice that share a storage,
                     an nn.Parameter and a real nn.Module state_dict (OrderedDict with _metadata)
  tiny_p4.ckpt       the same object with pickle protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL)
  tiny_deflate.ckpt  tiny.ckpt re-zipped with deflate compression
  malicious.ckpt     a torch.save archive whose data.pkl calls os.system when Python unpickles it
  expected.json      every tensor's dtype, shape and values as the tests expect them

Nothing here loads malicious.ckpt: it is only written.
"""
import collections
import io
import json
import os
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'ckpt')
os.makedirs(OUT, exist_ok=True)


def tiny_object():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4 - 1  # exact in every float format
    net = torch.nn.Sequential(collections.OrderedDict([
        ('fc', torch.nn.Linear(3, 2)),
        ('norm', torch.nn.LayerNorm(2)),
    ]))
    with torch.no_grad():
        net.fc.weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [0.25, 0.0, -0.75]]))
        net.fc.bias.copy_(torch.tensor([1.0, -2.0]))
    state = collections.OrderedDict()
    state['model.base'] = base
    state['model.transposed'] = base.t()            # stride (1, 4), same storage as base
    state['model.slice'] = base[1:, 2:]              # storage offset 6
    state['model.half'] = (torch.arange(6, dtype=torch.float32) / 8 - 0.25).half()
    state['model.bf16'] = torch.tensor([1.5, -2.0, 0.0078125, 3.0]).bfloat16()
    state['model.double'] = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64)
    state['model.long'] = torch.tensor([-3, 0, 2**40], dtype=torch.int64)
    state['model.bool'] = torch.tensor([True, False, True])
    state['model.param'] = torch.nn.Parameter(torch.tensor([7.0, 8.0]))
    state['model.scalar'] = torch.tensor(2.5)
    for k, v in net.state_dict().items():
        state['net.' + k] = v
    return {'state_dict': state, 'global_step': 7, 'epoch': 1,
            'info': {'lr': 1e-4, 'tags': ['tiny', None, True], 'big': 2**70}}


def expected(obj):
    out = {}
    for k, v in obj['state_dict'].items():
        t = v.detach()
        values = t.float().flatten().tolist() if t.dtype not in (torch.int64, torch.bool) else [int(x) for x in t.flatten().tolist()]
        out[k] = {'dtype': str(t.dtype).replace('torch.', ''), 'shape': list(t.shape), 'values': values}
    return out


class Evil:
    def __reduce__(self):
        return (os.system, ('echo this should never run',))


def main():
    obj = tiny_object()
    torch.save(obj, os.path.join(OUT, 'tiny.ckpt'))
    torch.save(obj, os.path.join(OUT, 'tiny_p4.ckpt'), pickle_protocol=4)
    with zipfile.ZipFile(os.path.join(OUT, 'tiny.ckpt')) as src, \
            zipfile.ZipFile(os.path.join(OUT, 'tiny_deflate.ckpt'), 'w', zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'payload': Evil()}, os.path.join(OUT, 'malicious.ckpt'))
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump({'torch': torch.__version__, 'global_step': 7, 'tensors': expected(obj)}, f, indent=1)
    for name in sorted(os.listdir(OUT)):
        print(f'{name:20s} {os.path.getsize(os.path.join(OUT, name)):7d} bytes')


if __name__ == '__main__':
    main()
