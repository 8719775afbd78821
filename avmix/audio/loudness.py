"""Streaming ITU-R BS.1770-4 integrated loudness (LUFS) and sample peaks.

K-weighting (high shelf + high pass biquads, coefficients derived for any rate from the analog
prototype) runs block by block with the filter state carried between blocks, so a file of any length
is measured in flat memory. The filter is :class:`IIRFilter`, plain numpy: importing scipy.signal
alone costs 0.7 s and ~80 MB of resident memory, more than the whole mixing job is allowed.
Mean squares are kept per 100 ms step; gating blocks are 400 ms with 75 % overlap, gated at -70 LUFS
(absolute) and -10 LU below the loudness of the blocks that pass the absolute gate (relative).

Defined edge cases (pyloudnorm raises or overflows on these):
- shorter than one 400 ms block: the whole signal is measured as a single block;
- digital silence, or everything below the -70 LUFS gate: loudness is ``-inf``.
"""
from __future__ import annotations

import array
import math

import numpy as np

from avmix.audio.channels import LAYOUTS
from avmix.stats import percentile

BLOCK_S = 0.4  # gating block length, seconds
STEP_S = 0.1  # 75 % overlap
ABS_GATE = -70.0  # LUFS
REL_GATE = -10.0  # LU below the absolute-gated loudness
OFFSET = -0.691  # dB, BS.1770 loudness offset

# K-weighting prototypes (BS.1770 48 kHz coefficients expressed as analog-prototype parameters)
_SHELF_DB, _SHELF_FC, _SHELF_Q = 3.999843853973347, 1681.974450955533, 0.7071752369554196
_SHELF_VB_EXP = 0.4996667741545416
_HP_FC, _HP_Q = 38.13547087602444, 0.5003270373238773


def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """Second-order sections (2, 6) of the BS.1770 K-weighting filter at ``sample_rate``."""
    k = math.tan(math.pi * _SHELF_FC / sample_rate)
    vh = 10.0 ** (_SHELF_DB / 20.0)
    vb = vh ** _SHELF_VB_EXP
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [(vh + vb * k / _SHELF_Q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / _SHELF_Q + k * k) / a0,
             1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0]
    k = math.tan(math.pi * _HP_FC / sample_rate)
    a0 = 1.0 + k / _HP_Q + k * k
    hp = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HP_Q + k * k) / a0]
    return np.array([shelf, hp], dtype=np.float64)


def channel_weights(channels: int) -> np.ndarray:
    """BS.1770 channel weights by the layout ``channels`` implies: 1.0 for the fronts, 1.41 for the back
    and side surrounds, 0 for the LFE (BS.1770 leaves it out). With no known layout (over 8 channels)
    the 4th and 5th channel are taken for the surrounds."""
    layout = LAYOUTS.get(channels)
    if layout is None:
        return np.array([1.41 if i in (3, 4) else 1.0 for i in range(channels)])
    return np.array([0.0 if spk == "LFE" else 1.41 if spk[0] in "BS" else 1.0 for spk in layout])


def to_lufs(power: float) -> float:
    return OFFSET + 10.0 * math.log10(power) if power > 0 else -math.inf


def gated_loudness(blocks: np.ndarray) -> float:
    """Integrated loudness (LUFS) of 400 ms gating blocks' K-weighted mean squares: the absolute gate,
    then the relative gate under the power mean of what passed it; ``-inf`` when nothing passes."""
    with np.errstate(divide="ignore"):
        lk = OFFSET + 10.0 * np.log10(np.maximum(blocks, 0.0))
    z, lk = blocks[lk > ABS_GATE], lk[lk > ABS_GATE]
    if len(z) == 0:
        return -math.inf
    z = z[lk > to_lufs(float(z.mean())) + REL_GATE]
    return to_lufs(float(z.mean())) if len(z) else -math.inf


class IIRFilter:
    """A cascade of biquads (``sos`` rows ``b0 b1 b2 1 a1 a2``) run on (n, channels) blocks, state carried.

    Vectorised exactly (no per-sample loop): the cascade is written in state space, the block is cut in
    chunks of ``CHUNK`` samples, each chunk's zero-state output is a small Toeplitz matrix product, and the
    states at the chunk starts follow from a log-depth prefix scan of the chunk-to-chunk transition.
    float32 by default (about 2x faster than scipy.signal.sosfilt here; relative error ~1e-5, far below
    0.01 LU); float64 matches sosfilt to rounding.
    """

    CHUNK = 32

    def __init__(self, sos: np.ndarray, channels: int, *, dtype=np.float32):
        a_m, b_v, c_v, d = None, None, None, None
        for b0, b1, b2, _, a1, a2 in np.asarray(sos, dtype=np.float64):
            A = np.array([[-a1, 1.0], [-a2, 0.0]])  # transposed direct form II of one section
            B = np.array([b1 - a1 * b0, b2 - a2 * b0])
            C = np.array([1.0, 0.0])
            if a_m is None:
                a_m, b_v, c_v, d = A, B, C, b0
                continue
            n0 = len(b_v)  # feed the previous stages' output into this section
            a_new = np.zeros((n0 + 2, n0 + 2))
            a_new[:n0, :n0] = a_m
            a_new[n0:, :n0] = np.outer(B, c_v)
            a_new[n0:, n0:] = A
            b_v = np.concatenate([b_v, B * d])
            c_v = np.concatenate([b0 * c_v, C])
            a_m, d = a_new, b0 * d
        m = self.CHUNK
        self.dim = dim = len(b_v)
        self.channels = channels
        pows = [np.eye(dim)]
        for _ in range(m):
            pows.append(a_m @ pows[-1])
        h = np.array([d] + [c_v @ pows[k - 1] @ b_v for k in range(1, m)])
        idx = np.arange(m)
        lag = idx[:, None] - idx[None, :]
        dt = dtype
        # chunk (m,) @ _t = zero-state output; @ _g = state at the chunk's end; start state @ _z = output
        self._t = np.ascontiguousarray(np.where(lag >= 0, h[np.clip(lag, 0, m - 1)], 0.0).T, dtype=dt)
        self._g = np.stack([pows[m - 1 - j] @ b_v for j in range(m)]).astype(dt)
        self._z = np.stack([c_v @ pows[j] for j in range(m)], axis=1).astype(dt)
        self._pows = pows
        # chunk-to-chunk transition Q = A^m and its squarings, block-diagonal over channels so the scan
        # is one 2-D product per level for all channels
        eye = np.eye(channels)
        q = pows[m]
        self._scan = []
        for _ in range(40):
            self._scan.append(np.ascontiguousarray(np.kron(eye, q).T, dtype=dt))
            q = q @ q
        self.dtype = dt
        self.state = np.zeros(channels * dim, dt)  # channel-major: [ch0 states, ch1 states, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter float (n, channels); returns **channel-major** (channels, n) in ``dtype``."""
        n, ch = x.shape
        m, dim = self.CHUNK, self.dim
        k = n // m
        y = np.empty((ch, n), self.dtype)
        if k:
            xc = np.ascontiguousarray(x[:k * m].T, dtype=self.dtype).reshape(ch * k, m)
            r = n - k * m
            # (ch*k, m) zero-state outputs; 2-D products are much faster than batched ones. With no tail
            # they go straight into y (a view of the same layout), saving a copy of the block
            out = np.matmul(xc, self._t, out=None if r else y.reshape(ch * k, m))
            e = (xc @ self._g).reshape(ch, k, dim).transpose(1, 0, 2).reshape(k, ch * dim)
            e[0] += self.state @ self._scan[0]
            step, level = 1, 0
            while step < k:  # e[j] <- sum_{i<=j} Q^(j-i) e[i]: the state at the end of chunk j
                e[step:] += e[:-step] @ self._scan[level]
                step *= 2
                level += 1
            starts = np.empty_like(e)
            starts[0] = self.state
            starts[1:] = e[:-1]
            out += starts.reshape(k, ch, dim).transpose(1, 0, 2).reshape(ch * k, dim) @ self._z
            if r:
                y[:, :k * m] = out.reshape(ch, k * m)
            self.state = e[-1].copy()
        r = n - k * m
        if r:  # tail shorter than a chunk
            xt = np.asarray(x[k * m:], dtype=self.dtype).T  # (ch, r)
            st = self.state.reshape(ch, dim)
            y[:, k * m:] = xt @ self._t[:r, :r] + st @ self._z[:, :r]
            st = st @ self._pows[r].T.astype(self.dtype) + xt @ self._g[m - r:]
            self.state = st.reshape(-1).astype(self.dtype)
        return y


class LoudnessMeter:
    """Feed float (n, channels) blocks with :meth:`add`; read :meth:`integrated` at any time."""

    def __init__(self, sample_rate: int, channels: int, *, weights: np.ndarray | None = None):
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self._filter = IIRFilter(k_weighting_sos(self.sample_rate), self.channels)
        self._weights = (channel_weights(self.channels) if weights is None
                         else np.asarray(weights, dtype=np.float64)).astype(np.float32)
        self._unit = bool(np.all(self._weights == 1.0))
        self._step = STEP_S * self.sample_rate  # may be fractional (e.g. 11025 Hz)
        self._pos = 0  # samples seen
        self._acc = 0.0  # channel-weighted sum of squares of the current, unfinished step
        # per finished 100 ms step: channel-weighted sum of squares and length; typed arrays, not lists,
        # so an hour of audio costs 0.6 MB rather than several (memory stays flat)
        self._steps = array.array("d")
        self._lens = array.array("q")

    def _boundary(self, j: int) -> int:
        return int(round(j * self._step))

    def add(self, block: np.ndarray) -> None:
        """Add float32/float64 samples of shape (n, channels)."""
        if len(block):
            self.add_power(self.power(block))

    def power(self, block: np.ndarray) -> np.ndarray:
        """The K-weighted, channel-weighted power per sample (n,) of the next block (the filter moves on)."""
        y = self._filter(block)  # (channels, n)
        np.square(y, out=y)
        if self._unit:
            return y[0] if len(y) == 1 else np.add.reduce(y, axis=0)
        return self._weights @ y  # weighted sum over channels, (n,)

    def add_power(self, z: np.ndarray) -> None:
        """Add what :meth:`power` gave for the next block."""
        n = len(z)
        start = self._pos
        end = start + n
        j = len(self._lens) + 1  # index of the next step boundary
        edges = [0]
        while (b := self._boundary(j)) <= end:
            edges.append(b - start)
            j += 1
        if edges[-1] != n:
            edges.append(n)
        # per-segment sums in float64 (pairwise within each segment)
        sums = np.add.reduceat(z, edges[:-1], dtype=np.float64) if n else []
        for k, total in enumerate(sums):
            self._acc += float(total)
            if start + edges[k + 1] == self._boundary(len(self._lens) + 1):  # a 100 ms step is complete
                self._steps.append(self._acc)
                self._lens.append(self._boundary(len(self._lens) + 1) - self._boundary(len(self._lens)))
                self._acc = 0.0
        self._pos = end

    def integrated(self) -> float:
        """Gated integrated loudness in LUFS (``-inf`` for silence)."""
        steps = np.asarray(self._steps)
        lens = np.asarray(self._lens, dtype=np.float64)
        per_block = int(round(BLOCK_S / STEP_S))
        if len(steps) < per_block:  # shorter than one gating block: measure what exists as one block
            total = steps.sum() + self._acc
            if self._pos == 0:
                return -math.inf
            return gated_loudness(np.array([total / self._pos]))
        cs = np.concatenate([[0.0], np.cumsum(steps)])
        cl = np.concatenate([[0.0], np.cumsum(lens)])
        return gated_loudness((cs[per_block:] - cs[:-per_block]) / (cl[per_block:] - cl[:-per_block]))


def short_term(meter: "LoudnessMeter", window_s: float = 3.0) -> np.ndarray:
    """Short-term loudness (LUFS, ``-inf`` where silent) of a meter's signal: ``window_s`` windows
    sliding by one 100 ms step (EBU Tech 3341 uses 3 s). Empty when the signal is shorter than a window."""
    steps = np.asarray(meter._steps)
    lens = np.asarray(meter._lens, dtype=np.float64)
    per = int(round(window_s / STEP_S))
    if len(steps) < per:
        return np.zeros(0)
    cs = np.concatenate([[0.0], np.cumsum(steps)])
    cl = np.concatenate([[0.0], np.cumsum(lens)])
    z = (cs[per:] - cs[:-per]) / (cl[per:] - cl[:-per])
    with np.errstate(divide="ignore"):
        return OFFSET + 10.0 * np.log10(np.maximum(z, 0.0))


def loudness_range(st: np.ndarray) -> float:
    """EBU Tech 3342 loudness range (LU) of short-term loudness values: the 10th to 95th percentile of
    those above -70 LUFS and above 20 LU under their power mean. 0 when nothing passes the gates."""
    st = np.asarray(st, dtype=np.float64)
    st = st[st > ABS_GATE]
    if len(st) == 0:
        return 0.0
    rel = 10.0 * np.log10(np.mean(10.0 ** (st / 10.0))) - 20.0
    st = st[st > rel]
    if len(st) == 0:
        return 0.0
    return percentile(st, 95.0) - percentile(st, 10.0)


def integrated_loudness(x: np.ndarray, sample_rate: int, *, blocksize: int = 65536) -> float:
    """Integrated loudness (LUFS) of a whole array (n,) or (n, channels)."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    m = LoudnessMeter(sample_rate, x.shape[1])
    for i in range(0, len(x), blocksize):
        m.add(x[i:i + blocksize])
    return m.integrated()


def peak_dbfs(peak: float) -> float:
    """Linear sample peak -> dBFS (``-inf`` for 0)."""
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf
