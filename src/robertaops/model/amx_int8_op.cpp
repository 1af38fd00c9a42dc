/* The AMX kernel (amx_int8.c) as torch's operator robertaops::amx_int8_mm, on torch's stable C ABI.
 *
 * Why not a Python custom op calling the kernel through ctypes: a compiled int8 layer (inductor's C++ wrapper) then
 * re-enters Python, and takes the GIL, for each of its four matmuls. That round trip cost ~40 us per call (a trivial
 * compiled graph around the op: 90 us through Python, 51 us through this); roberta-base at batch 1 x 16 tokens runs
 * 1.08-1.10x faster this way (benchmarks/int8_ab.py --op). Registered here, the dispatcher calls the kernel directly
 * and the whole layer runs without the GIL. The schema and the shape function are defined in model/amx.py; this
 * file only adds the CPU kernel.
 */
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

extern "C" {
#include "amx_int8.c"
}

using torch::stable::Tensor;

/* (M, K) int8 x weights packed by amx.pack, (N/16, K/64, 16, 64) -> (M, N) int32, exact. */
static Tensor amx_int8_mm(Tensor a, Tensor packed) {
    STD_TORCH_CHECK(a.dim() == 2 && packed.dim() == 4, "amx_int8_mm: a (M, K) and packed (N/16, K/64, 16, 64)");
    STD_TORCH_CHECK(a.scalar_type() == torch::headeronly::ScalarType::Char &&
                        packed.scalar_type() == torch::headeronly::ScalarType::Char && packed.is_contiguous(),
                    "amx_int8_mm: int8 inputs, the weights contiguous");
    STD_TORCH_CHECK(a.size(1) == packed.size(1) * 64, "amx_int8_mm: K differs between a and the packed weights");
    a = torch::stable::contiguous(a);
    const int64_t M = a.size(0), K = a.size(1), N = packed.size(0) * 16;
    Tensor out = torch::stable::new_empty(a, {M, N}, torch::headeronly::ScalarType::Int);
    if (M)
        ro_amx_int8_mm(static_cast<const int8_t *>(a.data_ptr()), static_cast<const int8_t *>(packed.data_ptr()),
                       static_cast<int32_t *>(out.data_ptr()), (int)M, (int)N, (int)K,
                       (int)torch::stable::get_num_threads());
    return out;
}

STABLE_TORCH_LIBRARY_IMPL(robertaops, CPU, m) { m.impl("amx_int8_mm", TORCH_BOX(&amx_int8_mm)); }
