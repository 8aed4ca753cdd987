/**
 * Loads, at run time, the VSS modules the training rows build their models and steps from: the same
 * models, configs and loss functions that `vss train ddpm` and `vss train vit` use (src/cli/ddpm.ts,
 * src/cli/vit.ts, src/train/vit.ts, src/diffusion/training.ts). Imported by URL for the reason given in
 * lib/vss.ts: a module that fails to load costs the training rows their VSS column, not the whole bench.
 */
import type * as DdpmCli from '../../src/cli/ddpm.js';
import type * as VitCli from '../../src/cli/vit.js';
import type * as DiffusionTraining from '../../src/diffusion/training.js';
import type * as Schedulers from '../../src/diffusion/schedulers/index.js';
import type * as Engine from '../../src/engine/index.js';
import type * as UNet2D from '../../src/models/unet2d.js';
import type * as ViT from '../../src/models/vit.js';
import type * as Optim from '../../src/optim/index.js';
import type * as VitTraining from '../../src/train/vit.js';

export interface TrainingApi {
  engine: typeof Engine;
  optim: typeof Optim;
  /** UNet2DModel */
  unet2d: typeof UNet2D;
  /** unetConfigFor, schedulerConfigFor: the configs `vss train ddpm` builds */
  ddpmCli: typeof DdpmCli;
  /** schedulerFromConfig: the noise schedule of a scheduler config */
  schedulers: typeof Schedulers;
  /** denoisingLoss: the DDPM objective */
  diffusionTraining: typeof DiffusionTraining;
  /** ViTForImageClassification */
  vit: typeof ViT;
  /** vitModelConfig: the ViT config of a `vss train vit` run */
  vitCli: typeof VitCli;
  /** vitStep, weightDecayGroups: the ViT training step and AdamW groups */
  vitTraining: typeof VitTraining;
}

const url = (rel: string): string => new URL(rel, import.meta.url).href;

export async function loadTrainingApi(): Promise<{ train: TrainingApi | null; error: string | null }> {
  try {
    const [engine, optim, unet2d, ddpmCli, schedulers, diffusionTraining, vit, vitCli, vitTraining] = await Promise.all([
      import(url('../../src/engine/index.js')) as Promise<typeof Engine>,
      import(url('../../src/optim/index.js')) as Promise<typeof Optim>,
      import(url('../../src/models/unet2d.js')) as Promise<typeof UNet2D>,
      import(url('../../src/cli/ddpm.js')) as Promise<typeof DdpmCli>,
      import(url('../../src/diffusion/schedulers/index.js')) as Promise<typeof Schedulers>,
      import(url('../../src/diffusion/training.js')) as Promise<typeof DiffusionTraining>,
      import(url('../../src/models/vit.js')) as Promise<typeof ViT>,
      import(url('../../src/cli/vit.js')) as Promise<typeof VitCli>,
      import(url('../../src/train/vit.js')) as Promise<typeof VitTraining>,
    ]);
    return { train: { engine, optim, unet2d, ddpmCli, schedulers, diffusionTraining, vit, vitCli, vitTraining }, error: null };
  } catch (e) {
    return { train: null, error: `cannot load the training modules: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}` };
  }
}
