"""Streaming forms of the zoo's models: a new chunk of audio and a state in, probabilities and the new state out.

The live engine decides every hop (50 ms) on the last second of audio. Recomputed from
scratch, 95 % of that work repeats the previous hop's. A streaming form keeps what the next
hop can reuse in a state and computes only what the new audio adds. `stream_module(model)`
returns the form of a model, one torch Module whose `forward(audio, *state)` returns
`(probs, *new_state)`: the same module runs in PyTorch (backends.streaming.TorchStep) and,
traced, in ONNX Runtime (`export.py --streaming`). `audio` is `[1, k * chunk_samples]` for any
k >= 1, so an engine that skipped hops (VAD closed, overload) catches up in one call.

Two forms, by frontend kind.

**logmel** (the image backbones and DS-CNN): the 1 s clip form exactly, over cached frames.
The log-mel frames of a window that lie wholly inside it (58 of 63) depend only on the stream,
not on where the window starts, once windows move in whole frame hops (16 ms); they are
computed once, when the audio for them arrives, and kept in a ring. The five edge frames
(reflect padding, the first sample's pre-emphasis) are recomputed for every window from its
audio, then the window is standardised as a whole and the network runs as before. The
output is the full-window model's output on the same window: an engine hop must be a
multiple of the frame hop (48 ms instead of 50 ms; `hop_multiple`).

**speech_mel** (the speech-embedding family): native streaming. The embedding sees 76 mel
frames (775 ms) and its time convolutions are unpadded with pools whose strides multiply to
8, so fed the stream frame by frame it yields one new embedding every 8 frames (80 ms) with
each layer keeping only its last few input frames; the head reads the 9 newest embeddings.
The stream form is defined as follows (this *is* the non-streaming reference that
:func:`speech_embedding_reference` computes over a whole file, and the streaming module
equals it):

- frame f of the stream holds samples [160 f - 240, 160 f + 160) (the 400-tap window);
  chunk s (samples [1280 s, 1280 s + 1280)) completes frames 8 s ... 8 s + 7;
- frame f's dB values are floored at 80 dB below the loudest value of frames f - 146 ... f;
- embedding j is the pretrained embedding of the floored frames 8 j ... 8 j + 75;
- after chunk s the head reads embeddings s - 17 ... s - 9 (the 9 newest complete ones);
- the stream is preceded by silence (digital zeros).

It differs from the 1 s clip form the head was trained on in three ways: the 9 embeddings
see 1.4 s of real audio where the clip form sees the clip centred in 1.5 s of zeros; the
floor looks back 147 frames instead of at the whole padded clip (a stream cannot look
ahead); and the embedding grid is fixed to the stream (every 80 ms) instead of to the window.
What that costs on real held-out speakers is measured (results/wakeword.json).

`StreamSpec.memory_samples`: the state after any call depends only on the last that many
samples of the stream, whatever came before. An engine that needs no output for a while may
drop older audio, and a fresh state warmed up on that much silence is the state of a stream
that has been silent forever (StreamRunner.reset).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kws.audio import INT16_SCALE
from kws.frontend import FrontendConfig, LogMel
from kws.speech_mel import POWER_FLOOR, SpeechMel, SpeechMelConfig
from zoo.model import KWSModel
from zoo.speech_embedding import FLOOR, LEAK

FORMS = ("logmel_frames", "speech_embedding")


class NoStreamingForm(ValueError):
    """The model has no streaming form (its frontend or backbone cannot stream)."""


@dataclass(frozen=True)
class StreamSpec:
    """What a runner needs to drive a streaming form; saved in a streaming ONNX file's metadata."""

    form: str  # one of FORMS
    chunk_samples: int  # audio is consumed in whole chunks
    hop_multiple: int  # an engine hop must be a multiple of this many samples (1: any hop)
    memory_samples: int  # the state depends only on this much of the latest audio (a chunk multiple)
    state: tuple[tuple[str, tuple[int, ...]], ...]  # state tensors: name, shape (float32)
    exact: bool  # True: equals the model's 1 s clip form on the same window (the full-window engine)
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"unknown streaming form {self.form!r}; known: {', '.join(FORMS)}")
        if min(self.chunk_samples, self.hop_multiple, self.memory_samples) < 1 or \
                self.memory_samples % self.chunk_samples:
            raise ValueError(f"streaming spec: chunk {self.chunk_samples}, hop multiple {self.hop_multiple} and "
                             f"memory {self.memory_samples} must be positive, memory a chunk multiple")
        object.__setattr__(self, "state", tuple((str(n), tuple(int(d) for d in s)) for n, s in self.state))
        object.__setattr__(self, "labels", tuple(self.labels))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["state"] = [[n, list(s)] for n, s in self.state]
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StreamSpec":
        """From a file's metadata: every field checked (ValueError says which); shapes bounded."""
        if not isinstance(d, dict):
            raise ValueError("streaming spec must be a mapping")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) - names or {"form", "chunk_samples", "hop_multiple", "memory_samples", "state", "exact"} - set(d):
            raise ValueError(f"streaming spec fields {sorted(d)} do not match {sorted(names)}")
        for k in ("chunk_samples", "hop_multiple", "memory_samples"):
            if isinstance(d[k], bool) or not isinstance(d[k], int) or not 1 <= d[k] <= 10 * 16000:
                raise ValueError(f"streaming spec {k}={d[k]!r}: expected an integer in [1, 160000]")
        state = d["state"]
        if not isinstance(state, list) or not 1 <= len(state) <= 256:
            raise ValueError("streaming spec state: expected a list of [name, shape] pairs")
        for item in state:
            ok = (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], list)
                  and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65536 for v in item[1])
                  and math.prod(item[1]) <= 4_000_000)
            if not ok:
                raise ValueError(f"streaming spec state entry {item!r}: expected [name, [dims ...]] of bounded size")
        if not isinstance(d["exact"], bool) or not isinstance(d.get("labels", []), list):
            raise ValueError("streaming spec exact/labels: expected a boolean and a list")
        return cls(**d)


def _chunks_up(n: int, chunk: int) -> int:
    return -(-n // chunk) * chunk


# ----------------------------------------------------------------------------- speech embedding


class SpeechEmbeddingStream(nn.Module):
    """The speech-embedding model as a streaming step (see the module docstring for the definition).

    Every time convolution keeps its last (kernel - 1) input frames; every time pool keeps the
    0 or 1 frame that waits for its partner, chosen so that the pool pairs frames exactly as the
    fully convolutional pass from frame 0 does (so embedding j starts at mel frame 8 j).
    """

    def __init__(self, model: KWSModel) -> None:
        super().__init__()
        fe, emb = model.frontend, model.backbone
        if not isinstance(fe, SpeechMel):
            raise NoStreamingForm(f"{model.cfg.name}: not a speech-mel model")
        cfg: SpeechMelConfig = fe.cfg
        self.cfg = cfg
        self.register_buffer("kernels", fe.kernels, persistent=False)
        self.register_buffer("mel_fb_t", fe.mel_fb_t, persistent=False)
        self.hop = cfg.hop_length
        self.tail = cfg.win_length - cfg.hop_length  # samples of the previous chunk the next frames need
        self.look = cfg.n_frames  # frames the causal floor looks back over (the clip form's span)
        self.n_windows = cfg.n_windows
        self.chunk = cfg.hop_length * cfg.window_step
        self.emb = emb
        self.head = model.head
        self.labels = tuple(model.labels)
        # Walk the layers once on a dummy input: each time op's context (frames kept) and input shape.
        # `start` is the absolute index of a layer's first output in its own time resolution, counting
        # the frames an op keeps from before; a pool keeps the frame that makes its pairs start even.
        plan: list[tuple[str, Any, int]] = []
        shapes: list[tuple[int, ...]] = []
        x = torch.zeros(1, 1, 200, cfg.n_mels + 2)
        start = -(emb.stem.kernel_size[0] - 1)
        shapes.append(tuple(x.shape[1:3]) + (x.shape[3],))
        x = emb.stem(x)
        convs = iter(emb.convs)
        for kind, arg in emb.plan:
            if kind == "pool":
                kt = arg[0]
                keep = start % kt if kt > 1 else 0
                plan.append(("pool", arg, keep))
                shapes.append(tuple(x.shape[1:]))
                start = (start - keep) // kt
                x = F.max_pool2d(x, arg, arg)
                continue
            conv = next(convs)
            kt = conv.kernel_size[0]
            x = F.pad(x, arg) if any(arg) else x
            plan.append(("conv", (conv, arg), kt - 1))
            shapes.append(tuple(x.shape[1:]))
            start -= kt - 1
            x = conv(x)
        self.plan = plan
        self.first_embedding = start  # index of the first (garbage) embedding of a fresh state: -9
        ctx = [emb.stem.kernel_size[0] - 1] + [keep for _, _, keep in plan]
        self._ctx = ctx
        states: list[tuple[str, tuple[int, ...]]] = [("tail", (1, self.tail)), ("peak", (1, self.look - 1))]
        for i, (c, shp) in enumerate(zip(ctx, shapes)):
            if c:
                states.append((f"ctx{i}", (1, shp[0], c, shp[2])))
        states.append(("emb", (1, self.n_windows, int(x.shape[1]))))
        self.state_shapes = tuple(states)

    @property
    def memory_samples(self) -> int:
        """Samples the state depends on (module docstring): the oldest of the 9 embeddings, the frames
        its floor looks back over, the partial chunk in the layers, and the 400-tap frame."""
        c = self.cfg
        frames = (self.n_windows - self.first_embedding) * c.window_step + self.look - 1
        return _chunks_up(frames * self.hop + self.tail, self.chunk) + self.chunk

    def spec(self) -> StreamSpec:
        return StreamSpec("speech_embedding", self.chunk, 1, self.memory_samples, self.state_shapes, False,
                          self.labels)

    def features(self, audio: torch.Tensor, tail: torch.Tensor, peak: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """New floored mel frames [1, 1, n, bands+2] (embedding layout), the new tail and peak states."""
        cfg = self.cfg
        x = torch.cat([tail, audio], dim=1)
        new_tail = x[:, x.shape[1] - self.tail:]
        spec = F.conv1d(x[:, None] * INT16_SCALE, self.kernels, stride=self.hop)  # [1, 2*257, n]
        bins = self.kernels.shape[0] // 2
        power = spec[:, :bins].square() + spec[:, bins:].square()
        db = 10.0 * torch.log10(torch.clamp(torch.matmul(self.mel_fb_t, power), min=POWER_FLOOR))  # [1, 32, n]
        m = torch.cat([peak, db.amax(dim=1)], dim=1)  # [1, look - 1 + n]: each frame's loudest band
        top = F.max_pool1d(m[:, None], self.look, 1)[:, 0]  # [1, n]: loudest of the frame and the 146 before
        db = torch.maximum(db, top[:, None] - cfg.top_db)
        feats = db * cfg.scale + cfg.offset
        new_peak = m[:, m.shape[1] - (self.look - 1):]
        return F.pad(feats.transpose(1, 2)[:, None], (1, 1)), new_tail, new_peak

    def forward(self, audio: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tail, peak, *ctx, ring = state
        x, new_tail, new_peak = self.features(audio, tail, peak)
        ctx_in, ctx_out = iter(ctx), []

        def keep(t: torch.Tensor, c: int) -> torch.Tensor:
            if not c:
                return t
            t = torch.cat([next(ctx_in), t], dim=2)
            ctx_out.append(t[:, :, t.shape[2] - c:])
            return t

        emb = self.emb
        x = emb.stem(keep(x, self._ctx[0]))
        x = torch.clamp_min(F.leaky_relu(emb.stem_bn(F.relu(x)), LEAK), FLOOR)
        for kind, arg, c in self.plan:
            if kind == "pool":
                x = keep(x, c)
                x = F.max_pool2d(x[:, :, : x.shape[2] - c] if c else x, arg, arg)
                continue
            conv, pad = arg
            x = conv(keep(F.pad(x, pad) if any(pad) else x, c))
            if conv.bias is not None:
                x = torch.clamp_min(F.leaky_relu(x, LEAK), FLOOR)
        new = x[..., 0].transpose(1, 2)  # [1, k, 96]: one embedding per chunk
        ring = torch.cat([ring, new], dim=1)
        ring = ring[:, ring.shape[1] - self.n_windows:]
        probs = torch.softmax(self.head(ring), dim=-1)
        return (probs, new_tail, new_peak, *ctx_out, ring)


def speech_embedding_reference(model: KWSModel, wave: np.ndarray, *, segment_frames: int = 4096,
                               embeddings: np.ndarray | None = None) -> np.ndarray:
    """The non-streaming reference of the speech-embedding stream form: probabilities after every chunk.

    The whole file at once, with no state: the mel of the silence-prefixed file, the causal
    floor, the embedding over all frames (fully convolutional, in segments), the head over
    the 9 newest embeddings at each chunk end. Row i = the output after the first i chunks
    (row 0: silence only), which is what the streaming module returns after that many.
    `embeddings` (from :func:`speech_embedding_stream_embeddings`) skips the shared backbone.
    """
    step = SpeechEmbeddingStream(model.eval())
    emb = embeddings if embeddings is not None else speech_embedding_stream_embeddings(model, wave, segment_frames)
    rows = len(wave) // step.chunk + 1
    lead = step.memory_samples // step.chunk  # chunks of silence before the stream
    # after i chunks of the stream (lead + i of the file), the 9 newest embeddings end at lead + i - 1 - 9
    first = np.arange(rows) + lead - 1 + step.first_embedding - (step.n_windows - 1)
    idx = first[:, None] + np.arange(step.n_windows)[None, :]
    if idx.min() < 0 or idx.max() >= len(emb):
        raise AssertionError(f"internal: embeddings {idx.min()}..{idx.max()} of {len(emb)}")
    out = []
    with torch.inference_mode():
        for i in range(0, rows, 4096):
            e = torch.from_numpy(emb[idx[i:i + 4096]])
            out.append(torch.softmax(step.head(e), dim=-1).numpy())
    return np.concatenate(out)


@torch.inference_mode()
def speech_embedding_stream_embeddings(model: KWSModel, wave: np.ndarray, segment_frames: int = 4096) -> np.ndarray:
    """Embedding j (file coordinates: the stream after `memory_samples` of silence) for every complete j."""
    step = SpeechEmbeddingStream(model.eval())
    cfg = step.cfg
    x = np.concatenate([np.zeros(step.tail + step.memory_samples, np.float32), np.asarray(wave, np.float32)])
    n = (len(x) - cfg.win_length) // step.hop + 1
    feats = np.empty((n, cfg.n_mels), np.float32)
    top = np.empty(n, np.float32)
    seg = segment_frames
    for f0 in range(0, n, seg):
        f1 = min(n, f0 + seg)
        piece = torch.from_numpy(x[f0 * step.hop: (f1 - 1) * step.hop + cfg.win_length])
        spec = F.conv1d(piece[None, None] * INT16_SCALE, step.kernels, stride=step.hop)
        bins = step.kernels.shape[0] // 2
        power = spec[:, :bins].square() + spec[:, bins:].square()
        db = 10.0 * torch.log10(torch.clamp(torch.matmul(step.mel_fb_t, power), min=POWER_FLOOR))[0]  # [32, m]
        feats[f0:f1] = db.T.numpy()
        top[f0:f1] = db.amax(0).numpy()
    # causal floor: the loudest of each frame and the `look - 1` before it (fewer at the very start)
    padded = np.concatenate([np.full(step.look - 1, -np.inf, np.float32), top])
    run = np.lib.stride_tricks.sliding_window_view(padded, step.look).max(axis=1)
    feats = np.maximum(feats, (run - cfg.top_db)[:, None]) * cfg.scale + cfg.offset
    n_emb = (n - cfg.window_frames) // cfg.window_step + 1
    out = np.empty((max(n_emb, 0), step.state_shapes[-1][1][2]), np.float32)
    per = max(1, seg // cfg.window_step)  # embeddings per segment
    for j0 in range(0, n_emb, per):
        j1 = min(n_emb, j0 + per)
        fr = feats[j0 * cfg.window_step: (j1 - 1) * cfg.window_step + cfg.window_frames]
        out[j0:j1] = step.emb(torch.from_numpy(fr.T.copy())[None, None]).numpy()[0]
    return out


# ----------------------------------------------------------------------------- log-mel


class LogMelStream(nn.Module):
    """A log-mel model's 1 s clip form over cached frames (see the module docstring)."""

    def __init__(self, model: KWSModel) -> None:
        super().__init__()
        fe = model.frontend
        if not isinstance(fe, LogMel):
            raise NoStreamingForm(f"{model.cfg.name}: not a log-mel model")
        cfg: FrontendConfig = fe.cfg
        n, h, c = cfg.n_fft, cfg.hop_length, cfg.clip_samples
        if n % h or n // 2 + 1 > c - n // 2:
            raise NoStreamingForm(f"{model.cfg.name}: n_fft {n} and hop {h} do not allow cached frames")
        self.cfg, self.fe, self.model = cfg, fe, model
        self.labels = tuple(model.labels)
        self.lo = -(-(n // 2 + 1) // h)  # first frame whose span starts after the window's first sample
        self.hi = (c - n // 2) // h  # last frame whose span ends inside the window
        self.n_inner = self.hi - self.lo + 1
        self.edges = [i for i in range(cfg.n_frames) if not self.lo <= i <= self.hi]
        # new inner frames are cut from (previous window + new audio) at offsets fixed from each end
        self.seg_start = h + h * self.hi - n // 2 - 1
        self.seg_end = c - h * self.hi - n // 2

    @property
    def memory_samples(self) -> int:
        return _chunks_up(self.cfg.clip_samples, self.cfg.hop_length) + self.cfg.hop_length

    def spec(self) -> StreamSpec:
        h = self.cfg.hop_length
        state = (("window", (1, self.cfg.clip_samples)), ("frames", (1, self.n_inner, self.cfg.n_mels)))
        return StreamSpec("logmel_frames", h, h, self.memory_samples, state, True, self.labels)

    def _mel(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [1, F, n_fft] -> mel power [1, F, n_mels], the full-window frontend's arithmetic."""
        dft = self.fe.dft
        # sample R*m + j of each frame at [j, m]: the factorised DFT's layout
        z = frames.reshape(frames.shape[0], frames.shape[1], dft.sub, dft.radix).permute(0, 3, 2, 1)
        return dft.frames_mel(z, frames.shape[1]).transpose(1, 2)

    def forward(self, audio: torch.Tensor, ring: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cfg = self.cfg
        n, h, c, pe = cfg.n_fft, cfg.hop_length, cfg.clip_samples, cfg.preemphasis
        full = torch.cat([ring, audio], dim=1)
        # new inner frames: pre-emphasised with the real previous sample, framed from hop blocks
        seg = full[:, self.seg_start: full.shape[1] - self.seg_end]
        y = seg[:, 1:] - pe * seg[:, :-1]
        blocks = y.reshape(1, -1, h)
        k = blocks.shape[1] - (n // h - 1)
        frames = torch.cat([blocks[:, i: i + k] for i in range(n // h)], dim=2)  # [1, k, n_fft]
        cache = torch.cat([cache, self._mel(frames)], dim=1)
        cache = cache[:, cache.shape[1] - self.n_inner:]
        # edge frames: from the window alone, as the clip form (first sample kept, reflect padding)
        win = full[:, full.shape[1] - c:]
        y = torch.cat([win[:, :1], win[:, 1:] - pe * win[:, :-1]], dim=1)
        y = F.pad(y[:, None], (n // 2, n // 2), mode="reflect")[:, 0]
        edge = self._mel(torch.stack([y[:, h * i: h * i + n] for i in self.edges], dim=1))
        left = sum(1 for i in self.edges if i < self.lo)
        mel = torch.cat([edge[:, :left], cache, edge[:, left:]], dim=1).transpose(1, 2)  # [1, n_mels, frames]
        mel = mel.reshape(1, cfg.n_mels, cfg.n_frames)  # a static shape: the exported network is planned once
        feats = self.fe.standardise(mel)
        if cfg.in_chans > 1:
            feats = feats.expand(-1, cfg.in_chans, -1, -1)
        probs = torch.softmax(self.model.forward_features(feats), dim=-1)
        return probs, win, cache


# ----------------------------------------------------------------------------- entry point


def stream_module(model: KWSModel) -> nn.Module:
    """The streaming module of an eval-mode model (NoStreamingForm when its frontend cannot stream)."""
    if isinstance(model.frontend, SpeechMel):
        return SpeechEmbeddingStream(model).eval()
    if isinstance(model.frontend, LogMel):
        return LogMelStream(model).eval()
    raise NoStreamingForm(f"{model.cfg.name}: no streaming form for frontend {type(model.frontend).__name__}")


__all__: Sequence[str] = ("FORMS", "LogMelStream", "NoStreamingForm", "SpeechEmbeddingStream", "StreamSpec",
                          "speech_embedding_reference", "speech_embedding_stream_embeddings", "stream_module")
