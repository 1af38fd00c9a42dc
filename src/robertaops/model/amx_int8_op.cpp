/* The AMX kernel (amx_int8.c) as torch's operators robertaops::amx_int8_mm and amx_int8_mm_float (int32 and float32
 * sums), on torch's stable C ABI.
 *
 * Why not a Python custom op calling the kernel through ctypes: a compiled int8 layer (inductor's C++ wrapper) then
 * re-enters Python, and takes the GIL, for each of its four matmuls. That round trip cost ~40 us per call (a trivial
 * compiled graph around the op: 90 us through Python, 51 us through this); roberta-base at batch 1 x 16 tokens runs
 * 1.08-1.10x faster this way (benchmarks/int8_ab.py --op). Registered here, the dispatcher calls the kernel directly
 * and the whole layer runs without the GIL. The schema and the shape function are defined in model/amx.py; this
 * file adds the CPU kernel, and the same kernel as a C shim for AOTInductor (below).
 */
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

extern "C" {
#include "amx_int8.c"
}

using torch::stable::Tensor;

/* The two operators' C shims (below) run this: AOTInductor calls a custom op that has a C shim (model/aot_layer.py
 * names them in `aot_inductor.custom_ops_to_c_shims`) directly, without the dispatcher, and without the proxy
 * executor that a compiled library would otherwise need from its Python loader. `a` comes from the compiled layer's
 * own quantization (contiguous int8); the weights are the layer's inputs, checked on the Python side. The operators
 * further below check their inputs and call this too. */
static AOTITorchError run(AtenTensorHandle a, AtenTensorHandle packed, AtenTensorHandle *ret0, int as_float) {
    int64_t *a_sizes, *a_strides, *p_sizes;
    void *a_data, *p_data, *out_data;
    if (aoti_torch_get_sizes(a, &a_sizes) || aoti_torch_get_strides(a, &a_strides) ||
        aoti_torch_get_sizes(packed, &p_sizes) || aoti_torch_get_data_ptr(a, &a_data) ||
        aoti_torch_get_data_ptr(packed, &p_data))
        return AOTI_TORCH_FAILURE;
    const int64_t M = a_sizes[0], K = a_sizes[1], N = p_sizes[0] * 16;
    if (K != p_sizes[1] * 64 || (M > 1 && a_strides[0] != K) || (K > 1 && a_strides[1] != 1))
        return AOTI_TORCH_FAILURE;
    const int64_t sizes[2] = {M, N}, strides[2] = {N, 1};
    const int32_t dtype = as_float ? aoti_torch_dtype_float32() : aoti_torch_dtype_int32();
    if (aoti_torch_empty_strided(2, sizes, strides, dtype, aoti_torch_device_type_cpu(), 0, ret0) ||
        aoti_torch_get_data_ptr(*ret0, &out_data))
        return AOTI_TORCH_FAILURE;
    if (M)
        ro_amx_int8_mm(static_cast<const int8_t *>(a_data), static_cast<const int8_t *>(p_data),
                       static_cast<int32_t *>(out_data), (int)M, (int)N, (int)K, (int)torch::stable::get_num_threads(),
                       as_float);
    return AOTI_TORCH_SUCCESS;
}

extern "C" AOTITorchError aoti_torch_cpu_amx_int8_mm(AtenTensorHandle a, AtenTensorHandle packed,
                                                      AtenTensorHandle *ret0) {
    return run(a, packed, ret0, 0);
}

/* The same sums as float32 (amx_int8.c, `sums_to_float`). */
extern "C" AOTITorchError aoti_torch_cpu_amx_int8_mm_float(AtenTensorHandle a, AtenTensorHandle packed,
                                                            AtenTensorHandle *ret0) {
    return run(a, packed, ret0, 1);
}

/* (M, K) int8 x weights packed by amx.pack, (N/16, K/64, 16, 64) -> (M, N) int32, exact (or float32, the same sums
 * converted as torch converts them): the checks, then the shims above. */
static Tensor checked(Tensor a, Tensor packed, int as_float) {
    STD_TORCH_CHECK(a.dim() == 2 && packed.dim() == 4, "amx_int8_mm: a (M, K) and packed (N/16, K/64, 16, 64)");
    STD_TORCH_CHECK(a.scalar_type() == torch::headeronly::ScalarType::Char &&
                        packed.scalar_type() == torch::headeronly::ScalarType::Char && packed.is_contiguous(),
                    "amx_int8_mm: int8 inputs, the weights contiguous");
    STD_TORCH_CHECK(a.size(1) == packed.size(1) * 64, "amx_int8_mm: K differs between a and the packed weights");
    a = torch::stable::contiguous(a);
    AtenTensorHandle out;
    STD_TORCH_CHECK(run(a.get(), packed.get(), &out, as_float) == AOTI_TORCH_SUCCESS,
                    "amx_int8_mm: allocating the output failed");
    return Tensor(out);
}

static Tensor amx_int8_mm(Tensor a, Tensor packed) { return checked(a, packed, 0); }
static Tensor amx_int8_mm_float(Tensor a, Tensor packed) { return checked(a, packed, 1); }

STABLE_TORCH_LIBRARY_IMPL(robertaops, CPU, m) {
    m.impl("amx_int8_mm", TORCH_BOX(&amx_int8_mm));
    m.impl("amx_int8_mm_float", TORCH_BOX(&amx_int8_mm_float));
}
