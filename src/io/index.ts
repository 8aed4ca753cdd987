export { SafetensorsFile, readSafetensors, writeSafetensors } from './safetensors.js';
export type { TensorInfo, FileDtype, EngineDtype } from './safetensors.js';
export { saveCheckpoint, loadCheckpoint } from './checkpoint.js';
export type { CheckpointParts, SaveCheckpointOptions, LoadedCheckpoint } from './checkpoint.js';
