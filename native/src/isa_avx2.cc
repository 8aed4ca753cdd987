// The kernels for the avx2 path: the shared implementation headers compiled inside namespace
// vss::avx2 on top of simd_avx2.h (compiled with its own -m flags (binding.gyp); only called after a CPU check).
#include <stddef.h>
#include <stdint.h>
#include <immintrin.h>

#include "common.h"

namespace vss {
namespace avx2 {
#include "simd_avx2.h"
#include "impl_util.h"
#include "impl_math.h"
#include "impl_gemm.h"
#include "impl_elt.h"
#include "impl_norm.h"
#include "impl_conv.h"
#include "impl_attn.h"
#include "impl_optim.h"
#include "impl_table.h"
}  // namespace avx2

const KernelTable* table_avx2() { return &avx2::kTable; }
}  // namespace vss
