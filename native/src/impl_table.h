// The kernel table of this ISA (included last, inside the ISA namespace).
static const KernelTable kTable = {
  VSS_ISA_NAME,
  gemm,
  conv2d,
  conv2d_bwd_input,
  conv2d_bwd_weight,
  attn_forward,
  attn_backward,
  unary,
  unary_bwd,
  binary,
  where,
  reduce,
  softmax,
  softmax_bwd,
  layer_norm,
  layer_norm_bwd,
  group_norm,
  group_norm_bwd,
  strided_copy,
  widen,
  narrow,
  adam_step,
#ifdef VSS_HAS_BF16_DOT
  true,
#else
  false,
#endif
};
