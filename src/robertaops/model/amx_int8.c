/* int8 x int8 -> int32 matmul on Intel AMX tiles, for the int8 path's Linears (model/amx.py builds and calls it).
 *
 * Why our own: on a 2-core Xeon with AMX, torch._int_mm (oneDNN's generic s8 GEMM) and oneDNN's prepacked u8 x s8
 * primitive reach 8-9 GB/s of weights at 16 tokens, where the weights stream from cache at 45 GB/s: they are bound
 * by per-call overhead and small-M inefficiency, not memory. One AMX instruction multiplies a 16 x 64 int8 tile by
 * a 64 x 16 one; this loop does nothing else, so roberta-base's 48 matmuls take 2.9 ms at 16 tokens against 11 ms,
 * and run ~2x faster at 128-2048 tokens too (benchmarks/RESULTS.md).
 *
 * C (M, N) = A (M, K) x W^T, W (N, K) stored as AMX B tiles by model/amx.py `pack`: for each block of 16 output
 * channels and each 64-wide slice of K, one 16 x 64-byte tile whose row r holds k = 4r .. 4r + 3 of each of the
 * 16 channels. N % 64 == 0 and K % 64 == 0. Sums are exact (int32), the same integers as torch._int_mm's.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* Tile registers (the intrinsics take literal numbers): 0-3 accumulate 4 blocks of 16 channels (C), 4 holds a
 * slice of A, 5 a slice of W. */
#define B_TILE 5

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Linux hands out AMX state only to processes that ask (0 on success). oneDNN asks too; asking twice is fine. */
int ro_amx_init(void) { return (int)syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); }

/* Tiles of `m` rows of A and C (the last row block may be short); B tiles are always 16 x 64 bytes. */
static void configure(int m) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t <= B_TILE; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = t == B_TILE ? 16 : (uint8_t)m;
    }
    _tile_loadconfig(&cfg);
}

void ro_amx_int8_mm(const int8_t *a, const int8_t *w, int32_t *c, int M, int N, int K, int threads) {
    const int groups = N / 64, slices = K / 64;
    const size_t group_bytes = (size_t)4 * slices * 1024; /* 4 channel blocks x K/64 tiles of 1 KB */
#pragma omp parallel num_threads(threads)
    {
        int configured = -1; /* tile state is per thread */
#pragma omp for schedule(static)
        for (int g = 0; g < groups; g++) {
            const int8_t *wg = w + g * group_bytes;
            for (int m0 = 0; m0 < M; m0 += 16) {
                const int m = M - m0 < 16 ? M - m0 : 16;
                if (m != configured) {
                    configure(m);
                    configured = m;
                }
                _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                const int8_t *arow = a + (size_t)m0 * K;
                for (int s = 0; s < slices; s++) {
                    _tile_loadd(4, arow + s * 64, K);
                    _tile_loadd(5, wg + (size_t)(0 * slices + s) * 1024, 64); _tile_dpbssd(0, 4, 5);
                    _tile_loadd(5, wg + (size_t)(1 * slices + s) * 1024, 64); _tile_dpbssd(1, 4, 5);
                    _tile_loadd(5, wg + (size_t)(2 * slices + s) * 1024, 64); _tile_dpbssd(2, 4, 5);
                    _tile_loadd(5, wg + (size_t)(3 * slices + s) * 1024, 64); _tile_dpbssd(3, 4, 5);
                }
                int32_t *crow = c + (size_t)m0 * N + g * 64;
                _tile_stored(0, crow, N * 4); _tile_stored(1, crow + 16, N * 4);
                _tile_stored(2, crow + 32, N * 4); _tile_stored(3, crow + 48, N * 4);
            }
        }
        if (configured != -1)
            _tile_release();
    }
}
