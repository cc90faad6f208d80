// grist's GPT kernels, fp32: the CUDA side of trainer/src/cuda.rs. Compiled at run time by
// NVRTC for the device's compute capability (no CUDA toolkit needed to build grist), and in CI
// by the NVRTC library from PyPI, so a syntax or type error never waits for a GPU.
//
// Every kernel computes what the CPU backend's function of the same name in
// trainer/src/forward.rs (or optim.rs, backend.rs) computes, with the same layouts:
// activations row-major (N = B*T rows), qkv rows [q | k | v] with heads contiguous inside each,
// attention log-sum-exps (B, NH, T). Matmuls are cuBLAS's.
//
// Determinism: no atomics. Every sum runs in an order fixed by the shapes alone (warp shuffles
// in a fixed tree, column sums over fixed row chunks added in chunk order), so a run repeats
// bit for bit on the same GPU and library versions.

#define WARP 32
#define FULL 0xffffffffu
// The largest head size the attention kernels take (lanes hold HS_MAX / 32 values each).
#define HS_MAX 256
#define PER_LANE (HS_MAX / WARP)
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = WARP / 2; o > 0; o /= 2) x += __shfl_xor_sync(FULL, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int o = WARP / 2; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(FULL, x, o));
    return x;
}

// ------------------------------------------------------------------------------ encoder
// out (N, C) = wte[token] + wpe[position].
extern "C" __global__ void encoder_forward(float* out, const int* tokens, const float* wte, const float* wpe,
                                           int n, int t, int c) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n * c) return;
    int row = (int)(i / c), k = (int)(i % c);
    out[i] = wte[(long long)tokens[row] * c + k] + wpe[(long long)(row % t) * c + k];
}

// dwpe[pos] += sum over batches b (in order) of dout[b*T + pos].
extern "C" __global__ void encoder_backward_wpe(float* dwpe, const float* dout, int b, int t, int c) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)t * c) return;
    int pos = (int)(i / c), k = (int)(i % c);
    float s = 0.0f;
    for (int bi = 0; bi < b; bi++) s += dout[((long long)bi * t + pos) * c + k];
    dwpe[i] += s;
}

// dwte[token] += the rows of dout holding that token, in row order: one block per distinct
// token; `rows` lists the positions grouped by token (host-sorted, stable), `starts` (groups + 1)
// where each group begins, `ids` each group's token.
extern "C" __global__ void encoder_backward_wte(float* dwte, const float* dout, const int* rows, const int* starts,
                                                const int* ids, int c) {
    int g = blockIdx.x;
    long long tok = ids[g];
    for (int k = threadIdx.x; k < c; k += blockDim.x) {
        float s = 0.0f;
        for (int j = starts[g]; j < starts[g + 1]; j++) s += dout[(long long)rows[j] * c + k];
        dwte[tok * c + k] += s;
    }
}

// ------------------------------------------------------------------------------ layernorm
// One warp per row: out = (x - mean) * rstd * w + b (eps 1e-5, biased variance).
extern "C" __global__ void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w,
                                             const float* b, int n, int c) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= n) return;
    const float* x = inp + (long long)row * c;
    float s = 0.0f;
    for (int i = lane; i < c; i += WARP) s += x[i];
    float mu = warp_sum(s) / c;
    float v = 0.0f;
    for (int i = lane; i < c; i += WARP) v += (x[i] - mu) * (x[i] - mu);
    float rs = rsqrtf(warp_sum(v) / c + 1e-5f);
    float* o = out + (long long)row * c;
    for (int i = lane; i < c; i += WARP) o[i] = (x[i] - mu) * rs * w[i] + b[i];
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// One warp per row: dinp += (w*dout - mean(w*dout) - norm * mean(w*dout*norm)) * rstd.
extern "C" __global__ void layernorm_backward_dinp(float* dinp, const float* dout, const float* inp, const float* w,
                                                   const float* mean, const float* rstd, int n, int c) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= n) return;
    const float* x = inp + (long long)row * c;
    const float* d = dout + (long long)row * c;
    float mu = mean[row], rs = rstd[row];
    float a = 0.0f, bsum = 0.0f;
    for (int i = lane; i < c; i += WARP) {
        float dn = w[i] * d[i];
        a += dn;
        bsum += dn * (x[i] - mu) * rs;
    }
    a = warp_sum(a) / c;
    bsum = warp_sum(bsum) / c;
    float* di = dinp + (long long)row * c;
    for (int i = lane; i < c; i += WARP) di[i] += (w[i] * d[i] - a - (x[i] - mu) * rs * bsum) * rs;
}

// Partial column sums over the rows of chunk blockIdx.y (rows_per rows): the LayerNorm's gain
// and bias gradients, pdw[chunk, col] and pdb[chunk, col].
extern "C" __global__ void layernorm_backward_partial(float* pdw, float* pdb, const float* dout, const float* inp,
                                                      const float* mean, const float* rstd, int n, int c,
                                                      int rows_per) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= c) return;
    int r0 = blockIdx.y * rows_per, r1 = min(n, r0 + rows_per);
    float sw = 0.0f, sb = 0.0f;
    for (int r = r0; r < r1; r++) {
        float d = dout[(long long)r * c + col];
        sb += d;
        sw += (inp[(long long)r * c + col] - mean[r]) * rstd[r] * d;
    }
    pdw[(long long)blockIdx.y * c + col] = sw;
    pdb[(long long)blockIdx.y * c + col] = sb;
}

// Partial column sums of x (n, c) over row chunks: a bias's gradient.
extern "C" __global__ void column_sum_partial(float* part, const float* x, int n, int c, int rows_per) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= c) return;
    int r0 = blockIdx.y * rows_per, r1 = min(n, r0 + rows_per);
    float s = 0.0f;
    for (int r = r0; r < r1; r++) s += x[(long long)r * c + col];
    part[(long long)blockIdx.y * c + col] = s;
}

// dst[col] += the chunks' partial sums, in chunk order.
extern "C" __global__ void column_sum_finish(float* dst, const float* part, int chunks, int c) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= c) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += part[(long long)k * c + col];
    dst[col] += s;
}

// ------------------------------------------------------------------------------ matmul helpers
// out (n, oc) = residual (or 0 when null) + bias broadcast over rows; a GEMM with beta = 1
// then adds inp . w^T.
extern "C" __global__ void rows_of_bias(float* out, const float* residual, const float* bias, int n, int oc) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n * oc) return;
    float r = residual ? residual[i] : 0.0f;
    out[i] = r + bias[i % oc];
}

// ------------------------------------------------------------------------------ gelu
// GELU (tanh), as x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3).
#define GELU_S 0.7978845608028654f
#define GELU_K 0.044715f
extern "C" __global__ void gelu_forward(float* out, const float* inp, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = inp[i];
    out[i] = x / (1.0f + expf(-2.0f * GELU_S * (x + GELU_K * x * x * x)));
}

// d = d * gelu'(inp), in place.
extern "C" __global__ void gelu_backward(float* d, const float* inp, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = inp[i];
    float e = expf(-2.0f * GELU_S * (x + GELU_K * x * x * x));
    float th = 2.0f / (1.0f + e) - 1.0f;
    float sech2 = 1.0f - th * th;
    d[i] *= 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_S * (1.0f + 3.0f * GELU_K * x * x);
}

// ------------------------------------------------------------------------------ attention
// The first key query `ti` sees: 0, or the start of its band (band <= 0: dense).
__device__ __forceinline__ int first_key(int ti, int band) { return band > 0 ? max(0, ti + 1 - band) : 0; }

// One warp per (batch, head, query): causal (optionally banded) attention with an online
// softmax; no T x T matrix. out (B, T, C) gets the head's hs columns, lse (B, NH, T) the
// log-sum-exp of the scaled scores.
extern "C" __global__ void attention_forward(float* out, float* lse, const float* qkv, int b, int t, int c, int nh,
                                             int band) {
    int w = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (w >= b * nh * t) return;
    int ti = w % t, bh = w / t, h = bh % nh, bi = bh / nh;
    int hs = c / nh, per = (hs + WARP - 1) / WARP;
    float scale = rsqrtf((float)hs);
    const float* q = qkv + ((long long)bi * t + ti) * 3 * c + h * hs;
    float qr[PER_LANE], acc[PER_LANE];
    _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
        if (k >= per) break;
        int i = lane + k * WARP;
        qr[k] = i < hs ? q[i] : 0.0f;
        acc[k] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    for (int tj = first_key(ti, band); tj <= ti; tj++) {
        const float* kv = qkv + ((long long)bi * t + tj) * 3 * c + h * hs;
        float s = 0.0f;
        _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
            if (k >= per) break;
            int i = lane + k * WARP;
            if (i < hs) s += qr[k] * kv[c + i];
        }
        s = warp_sum(s) * scale;
        float mn = fmaxf(m, s);
        float corr = expf(m - mn), p = expf(s - mn);
        l = l * corr + p;
        _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
            if (k >= per) break;
            int i = lane + k * WARP;
            acc[k] = acc[k] * corr + (i < hs ? p * kv[2 * c + i] : 0.0f);
        }
        m = mn;
    }
    float* o = out + ((long long)bi * t + ti) * c + h * hs;
    _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
        if (k >= per) break;
        int i = lane + k * WARP;
        if (i < hs) o[i] = acc[k] / l;
    }
    if (lane == 0) lse[w] = m + logf(l);
}

// D (B, NH, T) = dout . out over each head: the softmax backward's row sums.
extern "C" __global__ void attention_dsum(float* dsum, const float* dout, const float* out, int b, int t, int c,
                                          int nh) {
    int w = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (w >= b * nh * t) return;
    int ti = w % t, bh = w / t, h = bh % nh, bi = bh / nh;
    int hs = c / nh;
    long long at = ((long long)bi * t + ti) * c + h * hs;
    float s = 0.0f;
    for (int i = lane; i < hs; i += WARP) s += dout[at + i] * out[at + i];
    s = warp_sum(s);
    if (lane == 0) dsum[w] = s;
}

// One warp per query: dq += sum over its keys of p (dp - D) scale k.
extern "C" __global__ void attention_backward_dq(float* dqkv, const float* dout, const float* qkv, const float* lse,
                                                 const float* dsum, int b, int t, int c, int nh, int band) {
    int w = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (w >= b * nh * t) return;
    int ti = w % t, bh = w / t, h = bh % nh, bi = bh / nh;
    int hs = c / nh, per = (hs + WARP - 1) / WARP;
    float scale = rsqrtf((float)hs);
    long long row = ((long long)bi * t + ti) * 3 * c + h * hs;
    const float* dO = dout + ((long long)bi * t + ti) * c + h * hs;
    float qr[PER_LANE], dor[PER_LANE], dq[PER_LANE];
    _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
        if (k >= per) break;
        int i = lane + k * WARP;
        qr[k] = i < hs ? qkv[row + i] : 0.0f;
        dor[k] = i < hs ? dO[i] : 0.0f;
        dq[k] = 0.0f;
    }
    float l = lse[w], dd = dsum[w];
    for (int tj = first_key(ti, band); tj <= ti; tj++) {
        const float* kv = qkv + ((long long)bi * t + tj) * 3 * c + h * hs;
        float s = 0.0f, dp = 0.0f;
        _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
            if (k >= per) break;
            int i = lane + k * WARP;
            if (i < hs) {
                s += qr[k] * kv[c + i];
                dp += dor[k] * kv[2 * c + i];
            }
        }
        s = warp_sum(s) * scale;
        dp = warp_sum(dp);
        float p = expf(s - l);
        float ds = p * (dp - dd) * scale;
        _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
            if (k >= per) break;
            int i = lane + k * WARP;
            if (i < hs) dq[k] += ds * kv[c + i];
        }
    }
    _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
        if (k >= per) break;
        int i = lane + k * WARP;
        if (i < hs) dqkv[row + i] += dq[k];
    }
}

// One warp per key: dk += sum over the queries that see it of p (dp - D) scale q, and
// dv += sum of p dout.
extern "C" __global__ void attention_backward_dkv(float* dqkv, const float* dout, const float* qkv, const float* lse,
                                                  const float* dsum, int b, int t, int c, int nh, int band) {
    int w = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (w >= b * nh * t) return;
    int tj = w % t, bh = w / t, h = bh % nh, bi = bh / nh;
    int hs = c / nh, per = (hs + WARP - 1) / WARP;
    float scale = rsqrtf((float)hs);
    long long row = ((long long)bi * t + tj) * 3 * c + h * hs;
    float kr[PER_LANE], vr[PER_LANE], dk[PER_LANE], dv[PER_LANE];
    _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
        if (k >= per) break;
        int i = lane + k * WARP;
        kr[k] = i < hs ? qkv[row + c + i] : 0.0f;
        vr[k] = i < hs ? qkv[row + 2 * c + i] : 0.0f;
        dk[k] = 0.0f;
        dv[k] = 0.0f;
    }
    int last = band > 0 ? min(t - 1, tj + band - 1) : t - 1;
    for (int ti = tj; ti <= last; ti++) {
        const float* q = qkv + ((long long)bi * t + ti) * 3 * c + h * hs;
        const float* dO = dout + ((long long)bi * t + ti) * c + h * hs;
        float s = 0.0f, dp = 0.0f;
        _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
            if (k >= per) break;
            int i = lane + k * WARP;
            if (i < hs) {
                s += q[i] * kr[k];
                dp += dO[i] * vr[k];
            }
        }
        s = warp_sum(s) * scale;
        dp = warp_sum(dp);
        int at = bh * t + ti;
        float p = expf(s - lse[at]);
        float ds = p * (dp - dsum[at]) * scale;
        _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
            if (k >= per) break;
            int i = lane + k * WARP;
            if (i < hs) {
                dk[k] += ds * q[i];
                dv[k] += p * dO[i];
            }
        }
    }
    _Pragma("unroll") for (int k = 0; k < PER_LANE; k++) {
        if (k >= per) break;
        int i = lane + k * WARP;
        if (i < hs) {
            dqkv[row + c + i] += dk[k];
            dqkv[row + 2 * c + i] += dv[k];
        }
    }
}

// ------------------------------------------------------------------------------ loss
// Block reductions in a fixed tree (blockDim.x a power of two, at most 1024).
__device__ float block_reduce(float x, bool is_max) {
    __shared__ float shared[WARP];
    int lane = threadIdx.x % WARP, wid = threadIdx.x / WARP;
    x = is_max ? warp_max(x) : warp_sum(x);
    __syncthreads();
    if (lane == 0) shared[wid] = x;
    __syncthreads();
    int warps = blockDim.x / WARP;
    float y = lane < warps ? shared[lane] : (is_max ? NEG_INF : 0.0f);
    y = is_max ? warp_max(y) : warp_sum(y);
    return y;
}

// One block per row: lse over the real vocabulary (padding columns are outside the softmax)
// and, with targets, each position's loss lse - z[target].
extern "C" __global__ void __launch_bounds__(1024)
    crossentropy_forward(float* lse, float* losses, const float* logits, const int* targets, int n, int v, int vp) {
    int row = blockIdx.x;
    if (row >= n) return;
    const float* z = logits + (long long)row * vp;
    float m = NEG_INF;
    for (int i = threadIdx.x; i < v; i += blockDim.x) m = fmaxf(m, z[i]);
    m = block_reduce(m, true);
    float s = 0.0f;
    for (int i = threadIdx.x; i < v; i += blockDim.x) s += expf(z[i] - m);
    s = block_reduce(s, false);
    if (threadIdx.x == 0) {
        float l = m + logf(s);
        lse[row] = l;
        if (targets) losses[row] = l - z[targets[row]];
    }
}

// dlogits = scale * (softmax - onehot) over the real vocabulary, 0 on the padding, in place.
extern "C" __global__ void __launch_bounds__(1024)
    crossentropy_backward(float* logits, const float* lse, const int* targets, int n, int v, int vp, float scale) {
    int row = blockIdx.x;
    if (row >= n) return;
    float* z = logits + (long long)row * vp;
    float l = lse[row];
    int y = targets[row];
    for (int i = threadIdx.x; i < vp; i += blockDim.x) {
        float g = i < v ? expf(z[i] - l) * scale : 0.0f;
        if (i == y) g -= scale;
        z[i] = g;
    }
}

// ------------------------------------------------------------------------------ optimizer
// AdamW, elementwise, as optim.rs's adamw_chunk: decoupled decay where decay[i] is 1.
extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, const unsigned char* decay,
                                 long long n, float beta1, float beta2, float eps, float wd, float c1, float c2,
                                 float lr, float grad_scale) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float mh = mi / c1, vh = vi / c2;
    float dec = decay[i] ? wd * p[i] : 0.0f;
    p[i] -= lr * (mh / (sqrtf(vh) + eps) + dec);
}

// parts[blockIdx.x] = the sum of squares of x over block_len elements, in f64, in a fixed tree
// (blockDim.x = 256).
extern "C" __global__ void sum_squares(double* parts, const float* x, long long n, long long block_len) {
    __shared__ double shared[256];
    long long start = (long long)blockIdx.x * block_len, end = min(n, start + block_len);
    double s = 0.0;
    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) s += (double)x[i] * (double)x[i];
    shared[threadIdx.x] = s;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o /= 2) {
        if (threadIdx.x < o) shared[threadIdx.x] += shared[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) parts[blockIdx.x] = shared[0];
}
