/* int8 x int8 -> int32 matmul on Intel AMX tiles, for the int8 path's Linears (model/amx.py builds and calls it).
 *
 * Why our own: on a 2-core Xeon with AMX, torch._int_mm (oneDNN's generic s8 GEMM) and oneDNN's prepacked u8 x s8
 * primitive reach 8-9 GB/s of weights at 16 tokens, where the weights stream from cache at 45 GB/s: they are bound
 * by per-call overhead and small-M inefficiency, not memory. One AMX instruction multiplies a 16 x 64 int8 tile by
 * a 64 x 16 one; this loop does nothing else, so roberta-base's 48 matmuls take ~3 ms at 16 tokens against 10-11 ms,
 * and run ~2x faster at 128-2048 tokens too (benchmarks/RESULTS.md).
 *
 * C (M, N) = A (M, K) x W^T, W (N, K) stored as AMX B tiles by model/amx.py `pack`: for each block of 16 output
 * channels and each 64-wide slice of K, one 16 x 64-byte tile whose row r holds k = 4r .. 4r + 3 of each of the
 * 16 channels. N % 64 == 0 and K % 64 == 0. Sums are exact (int32), the same integers as torch._int_mm's.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* Two steps, each on one group of 64 output channels (the intrinsics take tile registers as literal numbers):
 * - `four`, for the last <= 16 rows: tiles 0-3 accumulate 4 blocks of 16 channels, 4 holds A's rows, 5 a W tile.
 * - `pair`, for 17-32 rows at once, so that each W tile is loaded once for both row blocks: per half of the group
 *   (32 channels), tiles 0-1 accumulate rows 0-15 and 2-3 the rest, 4-5 hold the two row blocks of A, 6-7 W tiles.
 *   Against two `four` steps: roberta-base's 48 matmuls at 20 and 32 tokens 10-17% faster (best of 40, alternating).
 */
enum { FOUR = 0, PAIR = 100 }; /* configuration keys: FOUR + rows, PAIR + rows of the second block */

/* Both steps ask for the W tiles they will need AHEAD slices later, on a matmul's first row block only. There the
 * weights come from L3 or memory, and a tile load waits for its 16 lines where the hardware prefetcher has not
 * guessed them; later blocks find the thread's share of W in L2, where prefetching every block cost 4-6% at
 * 256-2,048 rows. roberta-base's 48 matmuls against no prefetching (benchmarks/int8_ab.py, median of 16 paired
 * rounds): 1.15x at 1 token, 1.14x at 16, 1.29-1.34x at 32-64, 1.10-1.19x at 128-2,048. */
#define AHEAD 2

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Linux hands out AMX state only to processes that ask (0 on success). oneDNN asks too; asking twice is fine. */
int ro_amx_init(void) { return (int)syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); }

static void configure(int key) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    if (key < PAIR) { /* FOUR: C and A tiles hold `key` rows; tiles 6-7 unused */
        cfg.rows[0] = cfg.rows[1] = cfg.rows[2] = cfg.rows[3] = cfg.rows[4] = (uint8_t)(key - FOUR);
        cfg.colsb[6] = cfg.colsb[7] = 0;
        cfg.rows[6] = cfg.rows[7] = 0;
    } else { /* PAIR: the second row block's C and A tiles hold `key - PAIR` rows */
        cfg.rows[2] = cfg.rows[3] = cfg.rows[5] = (uint8_t)(key - PAIR);
    }
    /* GCC 12 does not count ldtilecfg as a read of `cfg` and may drop the stores above as dead (seen at -O2 once
     * this function was no longer inlined: every tile then had 0 rows and the first tile load faulted). */
    __asm__ volatile("" : : "r"(&cfg) : "memory");
    _tile_loadconfig(&cfg);
}

static inline void fetch(const int8_t *tile) {
    for (int line = 0; line < 1024; line += 64)
        _mm_prefetch((const char *)(tile + line), _MM_HINT_T0);
}

/* C rows [0, m) x channels [0, 64) += A rows [0, m) x the group's 4 W blocks; m <= 16. */
static void four(const int8_t *a, const int8_t *wg, int32_t *c, int N, int K, int slices, int ahead) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (int s = 0; s < slices; s++) {
        if (ahead && s + AHEAD < slices)
            for (int b = 0; b < 4; b++)
                fetch(wg + (size_t)(b * slices + s + AHEAD) * 1024);
        _tile_loadd(4, a + s * 64, K);
        _tile_loadd(5, wg + (size_t)(0 * slices + s) * 1024, 64); _tile_dpbssd(0, 4, 5);
        _tile_loadd(5, wg + (size_t)(1 * slices + s) * 1024, 64); _tile_dpbssd(1, 4, 5);
        _tile_loadd(5, wg + (size_t)(2 * slices + s) * 1024, 64); _tile_dpbssd(2, 4, 5);
        _tile_loadd(5, wg + (size_t)(3 * slices + s) * 1024, 64); _tile_dpbssd(3, 4, 5);
    }
    _tile_stored(0, c, N * 4); _tile_stored(1, c + 16, N * 4);
    _tile_stored(2, c + 32, N * 4); _tile_stored(3, c + 48, N * 4);
}

/* The same for 17-32 rows: rows 0-15 and 16-31 share every W tile load. */
static void pair(const int8_t *a, const int8_t *wg, int32_t *c, int N, int K, int slices, int ahead) {
    for (int half = 0; half < 2; half++) {
        const int8_t *w0 = wg + (size_t)(2 * half) * slices * 1024, *w1 = w0 + (size_t)slices * 1024;
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        for (int s = 0; s < slices; s++) {
            if (ahead && s + AHEAD < slices) {
                fetch(w0 + (size_t)(s + AHEAD) * 1024);
                fetch(w1 + (size_t)(s + AHEAD) * 1024);
            }
            _tile_loadd(4, a + s * 64, K);
            _tile_loadd(5, a + (size_t)16 * K + s * 64, K);
            _tile_loadd(6, w0 + (size_t)s * 1024, 64);
            _tile_loadd(7, w1 + (size_t)s * 1024, 64);
            _tile_dpbssd(0, 4, 6); _tile_dpbssd(1, 4, 7);
            _tile_dpbssd(2, 5, 6); _tile_dpbssd(3, 5, 7);
        }
        int32_t *ch = c + half * 32;
        _tile_stored(0, ch, N * 4); _tile_stored(1, ch + 16, N * 4);
        _tile_stored(2, ch + (size_t)16 * N, N * 4); _tile_stored(3, ch + (size_t)16 * N + 16, N * 4);
    }
}

/* With `as_float`, a block's int32 sums (rows x 64 channels) become float in place, while they are in L1, rounded as
 * torch rounds int32 -> float (to nearest even): the same floats as torch._int_mm(...).float(). For the QKV matmul,
 * whose sums are rescaled to bf16 next: inductor vectorizes int32 -> float 16 lanes at a time only, and a loop that
 * writes bf16 runs 32, where ATen's generic conversion goes one element at a time (~12% of an int8 forward on short
 * inputs). For the other matmuls the conversion in their 16-lane loops is cheap, and here it would cost 5-8%. */
static void sums_to_float(int32_t *c, int rows, int N) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < 64; j += 16) {
            int32_t *at = c + (size_t)r * N + j;
            _mm512_storeu_ps(at, _mm512_cvtepi32_ps(_mm512_loadu_si512(at)));
        }
}

/* Each thread takes a contiguous share of the channel groups. Within it, rows go in blocks of 32 and, for each
 * block, every group of the share: the block's rows of A (32 x K bytes) are reused from L1/L2 by all the groups,
 * and each W tile is read once per block. The first loop order (group outer, all rows inner) re-read A from L2 or
 * L3 for every group: roberta-base's 48 matmuls 1.3-1.6x slower at 128-512 tokens and 1.5-2.8x at 2048 (same
 * process, alternating, best of 4-40; level at <= 32 tokens, where there is one block). Blocks of 64 or 128 rows per
 * group visit, or splitting K in chunks, measured no better. */
void ro_amx_int8_mm(const int8_t *a, const int8_t *w, int32_t *c, int M, int N, int K, int threads, int as_float) {
    const int groups = N / 64, slices = K / 64;
    const size_t group_bytes = (size_t)4 * slices * 1024; /* 4 channel blocks x K/64 tiles of 1 KB */
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int g0 = groups * t / nt, g1 = groups * (t + 1) / nt;
        int configured = -1; /* tile state is per thread */
        for (int m0 = 0; m0 < M;) {
            const int rows = M - m0, key = rows > 16 ? PAIR + (rows > 32 ? 16 : rows - 16) : FOUR + rows;
            if (g0 < g1 && key != configured) {
                configure(key);
                configured = key;
            }
            const int block = key >= PAIR ? 16 + key - PAIR : rows;
            for (int g = g0; g < g1; g++) {
                const int8_t *wg = w + g * group_bytes;
                int32_t *cg = c + (size_t)m0 * N + g * 64;
                if (key >= PAIR)
                    pair(a + (size_t)m0 * K, wg, cg, N, K, slices, m0 == 0);
                else
                    four(a + (size_t)m0 * K, wg, cg, N, K, slices, m0 == 0);
                if (as_float)
                    sums_to_float(cg, block, N);
            }
            m0 += block;
        }
        if (configured != -1)
            _tile_release();
    }
}
