"""CUDA C source of the device loop's bookkeeping kernels, compiled at run time with NVRTC.

Each kernel reads the device-side step counter (``t_ptr``) instead of taking the step as an
argument, so one captured CUDA graph serves every step (and every row, for ``gather_row``).
:class:`pixelrt.runtime.trt_host.HostDevice` mirrors each kernel in numpy, index arithmetic
included, and is what the CPU tests check against the host step loop.
"""

KERNEL_NAMES = ["pre_step", "commit_ring", "post_step", "advance", "gather_row"]

KERNELS = r"""
typedef long long i64;
extern "C" __global__ void pre_step(const i64* t_ptr, const i64* pos, const float* noise_tab, const i64* force_tab,
                                    float* noise_in, i64* force_in, i64* row_in, i64* col_in, i64* ch_in,
                                    int noise_n, int force_n) {
    const i64 t = *t_ptr;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k < noise_n) noise_in[k] = noise_tab[t * noise_n + k];
    if (k < force_n) force_in[k] = force_tab[t * force_n + k];
    if (k == 0) { row_in[0] = pos[3 * t]; col_in[0] = pos[3 * t + 1]; ch_in[0] = pos[3 * t + 2]; }
}
// ring-row (stride 1) and strided-ring-row: after a pixel's last sub-step, and only at pixels on the
// state's grid (row % stride == col % stride == 0), write the new column at
// [:, :, (row / stride + pad) % rows, col / stride + pad, :].
extern "C" __global__ void commit_ring(const i64* t_ptr, const i64* pos, const float* src, float* dst,
                                       int n, int rows, int wp, int c, int pad, int last, int stride) {
    const i64 t = *t_ptr;
    if (pos[3 * t + 2] != last) return;
    const int i = (int)pos[3 * t], j = (int)pos[3 * t + 1];
    if (i % stride != 0 || j % stride != 0) return;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    const int slot = (i / stride + pad) % rows, col = j / stride + pad;
    const int bl = k / c, ch = k % c;   // src (B, L, C) -> dst (B, L, rows, W / stride + 2 pad, C)
    dst[(((size_t)bl * rows + slot) * wp + col) * c + ch] = src[k];
}
extern "C" __global__ void post_step(const i64* t_ptr, const i64* pos, const i64* value, const float* logp,
                                     i64* value_tab, float* logp_tab, i64* pixel, int b, int channels, int cps,
                                     int last) {
    const i64 t = *t_ptr;
    const int s = (int)pos[3 * t + 2];
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const int n = b * cps;
    if (k < n) {
        value_tab[t * n + k] = value[k];
        logp_tab[t * n + k] = logp[k];
        if (s != last) pixel[(k / cps) * channels + s * cps + (k % cps)] = value[k];
    }
    if (s == last && k < b * channels) pixel[k] = 0;
}
extern "C" __global__ void advance(i64* t_ptr) { *t_ptr += 1; }
// After row i's last step (cursor = (i + 1) * w * substeps): the finished row (B, C, W) out of the
// value table, and row = i, for the per-row graph.
extern "C" __global__ void gather_row(const i64* t_ptr, const i64* pos, const i64* value_tab, i64* row_pixels,
                                      i64* row_in, int b, int channels, int cps, int w, int substeps) {
    const i64 t0 = *t_ptr - (i64)w * substeps;
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k == 0) row_in[0] = pos[3 * t0];
    if (k >= b * channels * w) return;
    const int j = k % w, ch = (k / w) % channels, bb = k / (w * channels);
    const int s = ch / cps, cc = ch % cps;
    row_pixels[k] = value_tab[(t0 + (i64)j * substeps + s) * b * cps + bb * cps + cc];
}
"""
