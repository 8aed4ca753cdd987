/**
 * The `train` rows: whole training steps (forward, backward, AdamW update) of two small models, in
 * images per second, against PyTorch running the same architecture (written by hand in
 * bench/peers/torch_bench.py: diffusers and transformers are not installed). Both sides report their
 * parameter count, so a model that drifted from its twin shows up beside the row.
 *
 * The VSS side builds its models and losses with the functions `vss train ddpm` / `vss train vit` use;
 * the step itself is the training loop's (src/train/loop.ts) without clipping, EMA and logging. The data
 * is a fixed synthetic batch: the rows time the compute, not the data loader.
 */
import type { Batch } from '../src/data/loader.js';
import type { Tensor } from '../src/engine/index.js';
import type { Optimizer } from '../src/optim/index.js';
import type { Case, Ctx } from './cases.js';
import type { TrainingApi } from './lib/training.js';
import { filled, type TimeOptions } from './lib/timing.js';

function trainingApi(ctx: Ctx): TrainingApi {
  if (!ctx.train) throw new Error('the training modules did not load (see the note above the table)');
  return ctx.train;
}

/** One optimiser step as the training loop takes it: zero the gradients, loss, read it, backward, update. */
function optimizerStep(optimizer: Optimizer<any>, lossOf: () => Tensor): void {
  optimizer.zeroGrad();
  const loss = lossOf();
  loss.item(); // the loop reads every loss (and so does the PyTorch peer)
  loss.backward();
  optimizer.step();
}

/**
 * A U-Net step takes seconds: a few timed steps after one warm-up (which also allocates AdamW's moments).
 * A ViT step takes a fifth of a second, and V8 keeps optimising the engine's JS for its first ~25 steps
 * (1 thread, AVX-512 VM: 200–230 ms at steps 2–6, 171–179 ms from step 26 on), so the rows measure the
 * steady state a training run spends its time in: 20 warm-up steps, then 10 timed (the peer gets the same).
 */
function stepTiming(quick: boolean, model: 'unet' | 'vit'): Partial<TimeOptions> {
  if (quick) return { reps: 2, minTime: 0, warmup: 1 };
  return model === 'unet' ? { reps: 3, minTime: 0, warmup: 1 } : { reps: 10, minTime: 0, warmup: 20 };
}

// ------------------------------------------------------------------------------------ DDPM U-Net

/**
 * Issue #3's small DDPM U-Net, diffusers' UNet2DModel with down blocks (DownBlock2D, AttnDownBlock2D,
 * DownBlock2D): 1×32×32, channels 32/64/128, 2 resnets per level, attention at the middle level (and in
 * the mid block), 8-channel heads, GroupNorm(8). About 3.69 M parameters.
 */
const UNET = { size: 32, channels: [32, 64, 128], layersPerBlock: 2, attentionLevels: [1], headDim: 8, groups: 8 };

export function trainUnetCase(quick: boolean): Case {
  const batch = quick ? 4 : 64, side = UNET.size;
  return {
    id: `train_unet_b${batch}`,
    group: 'train',
    label: `train DDPM U-Net ${side}×${side} batch ${batch}`,
    quick: true,
    items: batch,
    timing: stepTiming(quick, 'unet'),
    vss: (ctx) => {
      const t = trainingApi(ctx);
      // `vss train ddpm`'s config for these settings, less what it adds to diffusers' plain model
      // (a class embedding and scale-shift time conditioning), so that both sides build the same net.
      const config = {
        ...t.ddpmCli.unetConfigFor({ ...UNET, dropout: 0 }, 0),
        num_class_embeds: null,
        resnet_time_scale_shift: 'default',
      };
      const unet = t.unet2d.UNet2DModel.fromDiffusersConfig(config, { rng: new t.engine.Rng(0) });
      unet.train();
      // DDPM's linear β schedule, ε prediction: the MSE between the predicted and the drawn noise.
      const schedule = t.schedulers.schedulerFromConfig(t.ddpmCli.schedulerConfigFor({ schedule: 'linear', prediction: 'epsilon' })).schedule;
      const optimizer = new t.optim.AdamW(unet.parameters(), { lr: 1e-4, weightDecay: 0 });
      const x0 = t.engine.fromTypedArray(filled(batch * side * side, 31), [batch, 1, side, side]);
      const noiseRng = new t.engine.Rng(1); // fresh timesteps and noise every step, as in training
      const loss = (): Tensor => t.diffusionTraining.denoisingLoss((xt, timesteps) => unet.forward(xt, timesteps), schedule, x0, null,
        { prediction: 'epsilon', rng: noiseRng }).loss;
      return { run: () => optimizerStep(optimizer, loss), params: unet.numParameters() };
    },
    peer: {
      kind: 'torch',
      spec: {
        kind: 'train_unet', batch, size: side, channels: UNET.channels, layers_per_block: UNET.layersPerBlock,
        attention_levels: UNET.attentionLevels, head_dim: UNET.headDim, groups: UNET.groups,
      },
    },
  };
}

// ------------------------------------------------------------------------------------------- ViT

/** Issue #3's ViT: 28×28×1, patch 7 (16 patches + CLS), dim 128, depth 6, 4 heads, MLP 256, 10 classes. */
const VIT = { patch: 7, dim: 128, depth: 6, heads: 4, mlp: 256 };
const VIT_SIDE = 28;
const VIT_CLASSES = 10;
const VIT_LABEL = `ViT p${VIT.patch} d${VIT.dim} L${VIT.depth} ${VIT_SIDE}×${VIT_SIDE}`;

function buildVit(t: TrainingApi, batch: number) {
  // A plain ViT (no conv stem), CLS pooling, learned positions, no dropout.
  const model = new t.vit.ViTForImageClassification(
    t.vitCli.vitModelConfig({ ...VIT, stem: [], pos: 'learned', pool: 'cls', dropPath: 0, dropout: 0 }),
    { rng: new t.engine.Rng(0) });
  if (model.labels.length !== VIT_CLASSES) throw new Error(`the ViT config has ${model.labels.length} classes, the peer ${VIT_CLASSES}`);
  const images = t.engine.fromTypedArray(filled(batch * VIT_SIDE * VIT_SIDE, 41), [batch, 1, VIT_SIDE, VIT_SIDE]);
  const labels = t.engine.fromTypedArray(Int32Array.from({ length: batch }, (_, i) => (i * 7) % VIT_CLASSES), [batch], 'i32');
  const data: Batch = { images, labels, captions: [], indices: [], epoch: 0, batch: 0 };
  return { model, data };
}

/** A ViT row: the same model, batch and peer spec for the training step and the forward pass. */
function vitCase(kind: 'train' | 'infer', quick: boolean, prepare: (t: TrainingApi, vit: ReturnType<typeof buildVit>) => () => void): Case {
  const batch = quick ? 16 : 128;
  return {
    id: `${kind}_vit_b${batch}`,
    group: 'train',
    label: `${kind} ${VIT_LABEL} batch ${batch}`,
    quick: true,
    items: batch,
    ...(kind === 'train' ? { timing: stepTiming(quick, 'vit') } : {}),
    vss: (ctx) => {
      const t = trainingApi(ctx);
      const vit = buildVit(t, batch);
      return { run: prepare(t, vit), params: vit.model.numParameters() };
    },
    peer: { kind: 'torch', spec: { kind: `${kind}_vit`, batch, size: VIT_SIDE, classes: VIT_CLASSES, ...VIT } },
  };
}

export function trainVitCase(quick: boolean): Case {
  return vitCase('train', quick, (t, { model, data }) => {
    model.train();
    // `vss train vit`'s AdamW groups (no decay on biases, norms, CLS, positions); plain cross-entropy.
    const optimizer = new t.optim.AdamW(t.vitTraining.weightDecayGroups(model, 0.05), { lr: 1e-3 });
    const unusedRng = new t.engine.Rng(2); // vitStep draws from it only when augmenting
    const loss = (): Tensor => t.vitTraining.vitStep(model, data, unusedRng, { labelSmoothing: 0, augment: null }).loss;
    return () => optimizerStep(optimizer, loss);
  });
}

export function inferVitCase(quick: boolean): Case {
  return vitCase('infer', quick, (t, { model, data }) => {
    model.eval();
    return () => { t.engine.noGrad(() => model.forward(data.images).logits); };
  });
}
