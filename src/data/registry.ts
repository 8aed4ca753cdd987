/** Datasets by name, and rebuilding a dataset from its spec (what worker threads do). */
import { existsSync, statSync } from 'node:fs';
import { FashionMnist, type FashionMnistOptions } from './fashion_mnist.js';
import { ImageFolder, type ImageFolderOptions } from './image_folder.js';
import { ShapesDataset, type ShapesOptions } from './shapes.js';
import type { Dataset, DatasetSpec } from './types.js';

export const DATASET_NAMES = ['fashion-mnist', 'shapes'] as const;

/** Options understood by `datasetFromName`; each dataset reads the ones that concern it. */
export interface DatasetFromNameOptions {
  /** 'train' | 'test' for Fashion-MNIST; 'train' | 'test' | 'heldout' for shapes. */
  split?: string;
  /** Folder of the Fashion-MNIST files (the CLI's --data). */
  dir?: string;
  size?: number;
  seed?: number;
  /** Extra options passed to the dataset as they are. */
  [key: string]: unknown;
}

/**
 * 'fashion-mnist', 'shapes', or a path to a folder of captioned images.
 * Fashion-MNIST's `dir` defaults to the system copy; a folder's `size` defaults to 64.
 */
export async function datasetFromName(name: string, opts: DatasetFromNameOptions = {}): Promise<Dataset> {
  if (name === 'fashion-mnist' || name === 'fashion_mnist' || name === 'fmnist') {
    return new FashionMnist(opts as FashionMnistOptions);
  }
  if (name === 'shapes') return new ShapesDataset(opts as ShapesOptions);
  if (existsSync(name) && statSync(name).isDirectory()) return ImageFolder.open({ ...opts, dir: name } as ImageFolderOptions);
  throw new Error(`unknown dataset '${name}': use ${DATASET_NAMES.join(', ')}, or the path of a folder of images`);
}

export async function datasetFromSpec(spec: DatasetSpec): Promise<Dataset> {
  switch (spec.kind) {
    case 'fashion-mnist': return new FashionMnist(spec.options as FashionMnistOptions);
    case 'shapes': return new ShapesDataset(spec.options as ShapesOptions);
    case 'image-folder': {
      const options = spec.options as unknown as Parameters<typeof ImageFolder.fromSpec>[0];
      return options.packed ? ImageFolder.fromSpec(options) : ImageFolder.open(options);
    }
    default: throw new Error(`no dataset kind '${spec.kind}' to rebuild`);
  }
}
