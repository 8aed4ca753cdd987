// The kernels for the portable path: the shared implementation headers compiled inside namespace
// vss::portable on top of simd_portable.h (no ISA flags: SSE2 on x86-64, NEON on arm64).
#include <stddef.h>
#include <stdint.h>

#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#include "common.h"

namespace vss {
namespace portable {
#include "simd_portable.h"
#include "impl_util.h"
#include "impl_math.h"
#include "impl_gemm.h"
#include "impl_elt.h"
#include "impl_norm.h"
#include "impl_conv.h"
#include "impl_attn.h"
#include "impl_optim.h"
#include "impl_table.h"
}  // namespace portable

const KernelTable* table_portable() { return &portable::kTable; }
}  // namespace vss
