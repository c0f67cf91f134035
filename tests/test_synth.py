"""The synthetic speech generator (kws.data.synth): layout, determinism, splits, variety, DSP."""
from __future__ import annotations

import dataclasses
import json
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="espeakng-loader wheel not installed")

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE  # noqa: E402
from kws.data import synth as S  # noqa: E402
# The modules that look up what a test patches (a patch of the package's re-export would do nothing).
from kws.data.synth import build, dsp, festival, plan, render  # noqa: E402
from kws.labels import BACKGROUND_NOISE_DIR, GSC_V2_WORDS  # noqa: E402


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a build except the timing stats (the one file allowed to differ)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != S.STATS_FILE}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # espeak only: the same bytes on every machine (the optional engines have tests of their own)
    return S.build_synth(tmp_path_factory.mktemp("synth") / "tiny", size="tiny", workers=1, engines=("espeak",),
                         progress=False)


@pytest.fixture(scope="module")
def manifest(tiny: Path) -> dict:
    return json.loads((tiny / S.MANIFEST).read_text())


def _speaker(relpath: str) -> str:
    return relpath.split("/")[1].split("_nohash_")[0]


# ------------------------------------------------------------------ layout


def test_layout_is_speech_commands(tiny: Path, manifest: dict) -> None:
    words = sorted(p.name for p in tiny.iterdir() if p.is_dir() and not p.name.startswith("_"))
    assert words == sorted(GSC_V2_WORDS)
    for w in words:
        files = sorted((tiny / w).glob("*.wav"))
        assert len(files) == S.TINY_PER_WORD
        for f in files:
            spk, n = f.stem.split("_nohash_")
            assert len(spk) == 8 and "_" not in spk and n.isdigit()
    assert (tiny / "validation_list.txt").is_file() and (tiny / "testing_list.txt").is_file()
    assert manifest["counts"]["clips"] == len(GSC_V2_WORDS) * S.TINY_PER_WORD
    assert set(manifest["clips"]) == {f"{w}/{f.name}" for w in words for f in (tiny / w).glob("*.wav")}


def test_every_clip_is_1s_16k_mono_pcm16_and_not_silent(tiny: Path) -> None:
    clips = [f for f in sorted(tiny.glob("*/*.wav")) if f.parent.name != BACKGROUND_NOISE_DIR]
    assert len(clips) == len(GSC_V2_WORDS) * S.TINY_PER_WORD
    for f in clips:
        with wave.open(str(f)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, SAMPLE_RATE, CLIP_SAMPLES), f
            x = np.frombuffer(w.readframes(CLIP_SAMPLES), np.int16).astype(np.float32) / 32768
        peak_db = 20 * np.log10(np.abs(x).max())
        assert -36 < peak_db < 0, f"{f}: peak {peak_db:.1f} dBFS"
        assert np.count_nonzero(x == 0) < CLIP_SAMPLES // 4, f"{f}: long digital silence"


def test_background_noise_folder(tiny: Path) -> None:
    noise = sorted((tiny / BACKGROUND_NOISE_DIR).glob("*.wav"))
    assert {p.stem for p in noise} == set(S.NOISE_FILES.values())
    for p in noise:
        with wave.open(str(p)) as w:
            assert w.getframerate() == SAMPLE_RATE and w.getnframes() == int(S.NOISE_SECONDS["tiny"] * SAMPLE_RATE)
            x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        assert 0.05 < np.sqrt(np.mean(x**2)) < 0.2, p.name  # normalised to about -20 dBFS


# ------------------------------------------------------------------ splits and variety


def test_splits_are_speaker_disjoint_and_about_80_10_10(tiny: Path, manifest: dict) -> None:
    val = set((tiny / "validation_list.txt").read_text().split())
    test = set((tiny / "testing_list.txt").read_text().split())
    train = set(manifest["clips"]) - val - test
    assert val and test and not (val & test)
    spk = {name: {_speaker(p) for p in s} for name, s in (("train", train), ("val", val), ("test", test))}
    assert not (spk["train"] & spk["val"]) and not (spk["train"] & spk["test"]) and not (spk["val"] & spk["test"])
    n = len(manifest["clips"])
    assert 0.08 <= len(val) / n <= 0.2 and 0.08 <= len(test) / n <= 0.2
    for p in val:
        assert manifest["speakers"][_speaker(p)]["split"] == "validation"


def test_clip_parameters_vary(manifest: dict) -> None:
    clips = list(manifest["clips"].values())
    for key in ("rate", "pitch_level", "level_dbfs", "position", "offset_s", "speech_s", "seed"):
        values = [c[key] for c in clips]
        assert len(set(values)) > len(values) // 2, key
    levels = [c["level_dbfs"] for c in clips]
    assert min(levels) >= -30 and max(levels) <= -6
    assert any(c["room"] for c in clips) and any(not c["room"] for c in clips)
    assert any(c["noise"] for c in clips) and any(not c["noise"] for c in clips)
    assert len({c["noise"]["kind"] for c in clips if c["noise"]}) >= 4
    speakers = manifest["speakers"].values()
    assert len({s["variant"] for s in speakers}) >= 10
    assert len({s["accent"] for s in speakers}) >= 5
    assert len({s["vtl"] for s in speakers}) > 0.9 * len(speakers)


def _mfcc(x: np.ndarray) -> np.ndarray:
    """12 cepstra per frame from the project's log-mel, mean-normalised (removes channel tilt)."""
    from scipy.fft import dct

    from kws.frontend import log_mel_reference

    lm = log_mel_reference(x)[0]  # [mels, frames]
    c = dct(lm, axis=0, norm="ortho")[1:13].T
    return c - c.mean(axis=0)


def _warp_distance(a: np.ndarray, b: np.ndarray, frames: int = 24) -> float:
    """Distance after linear time-normalisation (a cheap stand-in for DTW)."""
    def fix(c: np.ndarray) -> np.ndarray:
        t = np.linspace(0, len(c) - 1, frames)
        return np.stack([np.interp(t, np.arange(len(c)), c[:, k]) for k in range(c.shape[1])], axis=1)

    return float(np.sqrt(((fix(a) - fix(b)) ** 2).sum(-1)).mean())


def test_words_sound_different_across_speakers(tmp_path: Path) -> None:
    """Listening by proxy: across different synthetic speakers, a word's nearest neighbour
    (MFCC, time-normalised) is mostly the same word, so words are told apart by content, not voice."""
    data = S.private_espeak_data(tmp_path / "d", list(S.ENGLISH_ACCENTS))
    voices = [("en-US", "m3", 0.95), ("en", "f2", 1.05), ("en-GB-scotland", "klatt4", 1.0), ("en-US-nyc", "Andy", 1.1)]
    words = ("yes", "no", "left", "seven")
    renderer = S.Renderer({}, data)
    rng = np.random.default_rng(0)
    feats = {}
    for i, (accent, variant, vtl) in enumerate(voices):
        sp = S.Speaker(f"{i:08x}", "espeak", accent, variant, vtl, 1.0, 0.8, 0.5, 0.6)
        S.install_voice(data, sp.id, S.voice_file_text(data, accent, variant, vtl, 1.0))
        for w in words:
            x, _ = renderer.speak(plan._draw_clip(rng, 0, w, sp, 0), sp)
            assert 0.15 < len(x) / SAMPLE_RATE <= S.MAX_WORD_SECONDS
            feats[(i, w)] = _mfcc(x)
    same, other, hits = [], [], 0
    for (i, w), f in feats.items():
        dists = {(j, v): _warp_distance(f, g) for (j, v), g in feats.items() if j != i}
        same += [d for (j, v), d in dists.items() if v == w]
        other += [d for (j, v), d in dists.items() if v != w]
        hits += min(dists, key=dists.get)[1] == w
    assert np.mean(same) < 0.85 * np.mean(other)
    assert hits / len(feats) >= 0.75


def test_punctuation_marks_change_the_intonation(tmp_path: Path) -> None:
    data = S.private_espeak_data(tmp_path / "d", ["en-US"])
    sp = S.Speaker("0000beef", "espeak", "en-US", "", 1.0, 1.0, 0.8, 0.5, 0.6)
    S.install_voice(data, sp.id, S.voice_file_text(data, "en-US", "", 1.0, 1.0))
    renderer = S.Renderer({}, data)
    spec = plan._draw_clip(np.random.default_rng(0), 0, "no", sp, 0)
    said = {m: renderer.speak(dataclasses.replace(spec, mark=m), sp)[0] for m in (".", "?", "!")}
    end = {m: _f0(x[len(x) // 2 :], SAMPLE_RATE) for m, x in said.items()}
    assert end["?"] > 1.05 * end["."]  # a question rises at the end
    assert not np.array_equal(said["!"][: len(said["."])], said["."][: len(said["!"])])
    assert len(set(S.MARKS)) > 1 and abs(sum(S.MARKS.values()) - 1) < 1e-9


# ------------------------------------------------------------------ determinism and caching


def test_deterministic_across_builds_and_worker_counts(tiny: Path, tmp_path: Path) -> None:
    again = S.build_synth(tmp_path / "again", size="tiny", workers=2, engines=("espeak",), progress=False)
    a, b = _files(tiny), _files(again)
    assert a.keys() == b.keys()
    different = [k for k in a if a[k] != b[k]]
    assert not different, f"{len(different)} files differ, e.g. {different[:3]}"


def test_other_seed_gives_other_data(tiny: Path, tmp_path: Path) -> None:
    other = S.build_synth(tmp_path / "s1", words=("yes", "no", "up"), size="tiny", seed=1, workers=1,
                          engines=("espeak",), progress=False)
    m = json.loads((other / S.MANIFEST).read_text())
    assert m["counts"]["clips"] == 12 and m["key"]["seed"] == 1
    ids0 = {_speaker(r) for r in json.loads((tiny / S.MANIFEST).read_text())["clips"]}
    assert not ids0 & {_speaker(r) for r in m["clips"]}


def test_second_call_returns_cached_build(tiny: Path) -> None:
    before = (tiny / S.MANIFEST).stat().st_mtime_ns
    assert S.build_synth(tiny, size="tiny", workers=1, engines=("espeak",), progress=False) == tiny
    assert (tiny / S.MANIFEST).stat().st_mtime_ns == before


def test_manifest_records_engines_and_settings(manifest: dict) -> None:
    assert manifest["key"]["engines"] == ["espeak"]
    assert manifest["engines"]["espeak"].startswith("libespeak-ng ")
    assert manifest["deterministic"] is True
    assert manifest["key"]["size"] == "tiny" and manifest["key"]["seed"] == 0
    assert manifest["key"]["version"] == S.SYNTH_VERSION


def test_killed_build_leaves_nothing_half_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def die(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "_render_all", die)
    with pytest.raises(KeyboardInterrupt):
        S.build_synth(tmp_path / "out", words=("yes",), size="tiny", workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    mine = tmp_path / "my_recordings"
    mine.mkdir()
    (mine / "keep.wav").write_bytes(b"RIFF")
    with pytest.raises(S.SynthError, match="refusing to replace"):
        S.build_synth(mine, words=("yes",), size="tiny", workers=1, progress=False)
    assert (mine / "keep.wav").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"size": "huge"}, "size"),
    ({"per_word": 0}, "per_word"),
    ({"engines": ("festival",)}, "engines"),
    ({"words": ("yes", "yes")}, "unique"),
    ({"words": ("_silence_",)}, "bad word"),
])
def test_bad_settings_are_named(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(S.SynthError, match=match):
        S.build_synth(tmp_path / "x", **{"size": "tiny", **kwargs})


# ------------------------------------------------------------------ engine and DSP units


def test_espeak_reload_makes_synthesis_reproducible(tmp_path: Path) -> None:
    data = S.private_espeak_data(tmp_path / "d", ["en-US"])
    voice = S.install_voice(data, "t", S.voice_file_text(data, "en-US", "Reed", 1.0, 1.0))
    eng = S.EspeakLib(data)
    assert eng.self_check(voice)
    x = eng.synth("seven", voice, 175, 50, 50)
    assert eng.sample_rate == 22050 and 0.2 < len(x) / eng.sample_rate < 1.5


def test_vocal_tract_scale_moves_formants(tmp_path: Path) -> None:
    data = S.private_espeak_data(tmp_path / "d", ["en-US"])
    eng = S.EspeakLib(data)

    def centroid(vtl: float) -> float:
        v = S.install_voice(data, f"v{int(vtl * 100)}", S.voice_file_text(data, "en-US", "", vtl, 1.0))
        x = eng.synth("ah", v, 175, 50, 0)
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / eng.sample_rate)
        band = (f > 300) & (f < 4000)
        return float((spec[band] * f[band]).sum() / spec[band].sum())

    assert centroid(1.15) > centroid(0.85) * 1.08


def test_foreign_reading_filter() -> None:
    assert S.reading_is_plausible("jˈeːs", ["jˈɛs"])  # German 'yes'
    assert S.reading_is_plausible("(en)ɹˈaɪt(de)", ["ɹˈaɪt"])  # switched to English
    assert not S.reading_is_plausible("ˈowse", ["hˈaʊs"])  # Spanish 'house'
    assert not S.reading_is_plausible("θˈeɾo", ["zˈiəɹoʊ"])  # Spanish 'zero'


def test_place_never_cuts_the_word() -> None:
    word = np.ones(9000, np.float32)
    wet = np.concatenate([word, np.full(5000, 0.5, np.float32)])  # with a reverb tail
    for pos in (0.0, 0.37, 1.0):
        clip, offset = S.place(len(word), wet, pos)
        assert clip.shape == (CLIP_SAMPLES,)
        assert np.all(clip[offset : offset + len(word)] == 1.0)
    assert S.place(len(word), wet, 1.0)[1] == CLIP_SAMPLES - len(word)


def test_trim_silence_keeps_the_word() -> None:
    x = np.zeros(16000, np.float32)
    x[5000:9000] = np.sin(np.arange(4000) * 0.3)
    y = S.trim_silence(x)
    assert 4000 <= len(y) <= 4000 + 3 * 160 and np.abs(y).max() == np.abs(x).max()


def test_room_impulse_decays_by_60db_at_rt60() -> None:
    room = S.Room(rt60=0.4, drr_db=0.0)
    h = S.room_impulse(room, np.random.default_rng(0))
    tail = h[1:].astype(np.float64) ** 2
    edc = np.cumsum(tail[::-1])[::-1]  # Schroeder backward integration
    edc_db = 10 * np.log10(edc / edc[0] + 1e-20)
    t20 = np.argmax(edc_db < -20) / SAMPLE_RATE  # T20 extrapolated to 60 dB
    assert 0.25 < 3 * t20 < 0.55
    assert abs(10 * np.log10(tail.sum()) - 0.0) < 0.5  # DRR 0 dB: tail energy == direct energy


def test_room_impulse_has_early_reflections_before_its_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    room = S.Room(rt60=0.3, drr_db=5.0)
    monkeypatch.setattr(dsp, "EARLY_REFLECTIONS", (0, 0))
    plain = S.room_impulse(room, np.random.default_rng(3))
    monkeypatch.setattr(dsp, "EARLY_REFLECTIONS", (3, 3))
    early = S.room_impulse(room, np.random.default_rng(3))
    gap = 1 + int(np.flatnonzero(plain[1:])[0])  # where the diffuse tail starts
    assert np.count_nonzero(plain[1:gap]) == 0 and 1 <= np.count_nonzero(early[1:gap]) <= 3
    for h in (plain, early):  # echoes and tail share the reflected energy: the DRR holds
        assert abs(10 * np.log10(np.sum(h[1:].astype(np.float64) ** 2)) + 5.0) < 0.5


def test_overdriven_channel_soft_clips_at_the_same_peak() -> None:
    x = (0.3 * np.sin(np.arange(SAMPLE_RATE) * 2 * np.pi * 200 / SAMPLE_RATE)).astype(np.float32)
    flat = dict(low_hz=200, low_db=0, high_hz=4000, high_db=0, peak_hz=1000, peak_db=0, peak_q=1, band="full",
                lowpass_hz=5000)
    clean = S.apply_channel(x, S.Channel(**flat))
    hot = S.apply_channel(x, S.Channel(**flat, drive=5.0))

    def crest(y: np.ndarray) -> float:
        return float(np.abs(y).max() / np.sqrt(np.mean(y**2)))

    assert abs(np.abs(hot).max() - np.abs(clean).max()) < 1e-3
    assert crest(hot) < 0.85 * crest(clean)  # flattened tops: a sine's crest factor is sqrt(2)


def test_telephone_channel_removes_high_band() -> None:
    x = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
    flat = dict(low_hz=200, low_db=0, high_hz=4000, high_db=0, peak_hz=1000, peak_db=0, peak_q=1, lowpass_hz=5000)
    tel = S.apply_channel(x, S.Channel(band="telephone", **flat))
    full = S.apply_channel(x, S.Channel(band="full", **flat))
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)

    def high_share(y: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(y)) ** 2
        return float(p[f > 4500].sum() / p.sum())

    assert high_share(full) > 0.3 and high_share(tel) < 0.01


def test_noise_colours_have_the_right_slope() -> None:
    rng = np.random.default_rng(0)
    f = np.fft.rfftfreq(4 * SAMPLE_RATE, 1 / SAMPLE_RATE)

    def slope(x: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(x)) ** 2
        band = (f > 100) & (f < 6000)
        return float(np.polyfit(np.log10(f[band]), 10 * np.log10(p[band] + 1e-20), 1)[0])

    n = 4 * SAMPLE_RATE
    assert abs(slope(S.noise_white(n, rng))) < 1
    assert -13 < slope(S.noise_pink(n, rng)) < -7  # -10 dB/decade
    assert -23 < slope(S.noise_brown(n, rng)) < -17  # -20 dB/decade


@pytest.mark.skipif(S.flite_binary() is None, reason="flite not installed (optional engine)")
def test_flite_engine_speaks_and_is_reproducible() -> None:
    renderer = S.Renderer({}, S.espeak_paths()[1])
    sp = S.Speaker("0000f11e", "flite", "slt", "", 1.05, 1.0, 0.8, 0.5, 0.5)
    spec = plan._draw_clip(np.random.default_rng(0), 0, "seven", sp, 0)
    a, _ = renderer.speak(spec, sp)
    b, _ = renderer.speak(spec, sp)
    assert 0.2 < len(a) / SAMPLE_RATE <= S.MAX_WORD_SECONDS and np.array_equal(a, b)


# ------------------------------------------------------------------ optional engines (festival, piper)

needs_festival = pytest.mark.skipif(not S.festival_voices(), reason="festival and its voices not installed "
                                    "(Debian packages; scripts/install.sh installs them)")
needs_piper = pytest.mark.skipif(not S.piper_voices(), reason="no Piper voice wheel installed (requirements.txt)")


def _f0(x: np.ndarray, sr: int) -> float:
    """Median autocorrelation pitch of the voiced 40 ms frames."""
    n, out = int(0.04 * sr), []
    for i in range(0, len(x) - n, n // 2):
        fr = x[i : i + n] - x[i : i + n].mean()
        ac = np.correlate(fr, fr, "full")[n - 1 :]
        lo, hi = sr // 400, sr // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[0] > 0 and ac[lag] > 0.5 * ac[0]:
            out.append(sr / lag)
    return float(np.median(out))


def test_respell_gives_each_language_its_own_spelling() -> None:
    assert S.respell("θɹˈiː", "cs") == "trí"
    assert S.respell("kˈæt", "it") == "chet"  # c before a front vowel is spelt ch
    assert S.respell("kˈæt", "ca") == "quet"
    assert S.respell("ɡˈoʊ", "it") == "gou"
    assert S.respell("jˈɛs", "ru") == "йэс"
    assert S.respell("ʃˈiːlə", "fi") == "siile"
    assert S.respell("(en)ɹˈaɪt(de)", "cs") == "rajt"  # espeak's language switches are dropped


def test_auto_engines_use_what_is_installed_and_name_what_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(build, "flite_binary", lambda: None)
    monkeypatch.setattr(build, "festival_voices", lambda: ())
    monkeypatch.setattr(build, "piper_voices", lambda: ())
    out = S.build_synth(tmp_path / "auto", words=("yes",), size="tiny", workers=1, progress=False)
    assert json.loads((out / S.MANIFEST).read_text())["key"]["engines"] == ["espeak"]
    err = capsys.readouterr().err
    assert "without flite, festival, piper" in err
    assert "apt-get install flite" in err and "scripts/install.sh" in err
    S.build_synth(tmp_path / "auto", words=("yes",), size="tiny", workers=1, progress=False)
    assert "note" not in capsys.readouterr().err  # said when building, not on every use of the cache


def test_install_script_installs_every_debian_engine() -> None:
    text = (Path(__file__).resolve().parents[1] / "scripts" / "install.sh").read_text()
    listed = text.split("TTS_PACKAGES=(", 1)[1].split(")", 1)[0].split()
    assert set(listed) == {"flite", *S.FESTIVAL_PACKAGES}


@needs_festival
def test_festival_voices_speak_reproducibly() -> None:
    for voice in S.festival_voices():
        lang = S.FESTIVAL_VOICES[voice].lang
        text = "seven" if lang == "en" else S.respell("sˈɛvən", lang)
        a, sr = S.festival_synth(text, voice, 1.0, 1.0, 1.0, seed=3)
        b, _ = S.festival_synth(text, voice, 1.0, 1.0, 1.0, seed=3)
        speech = S.trim_silence(S.to_16k(a, sr), floor_db=S.FESTIVAL_VOICES[voice].floor_db)
        assert 0.15 < len(speech) / SAMPLE_RATE < 1.2, voice
        assert np.array_equal(a, b), voice


@needs_festival
def test_festival_prosody_reaches_a_diphone_voice() -> None:
    voice = next(v for v in S.festival_voices() if S.FESTIVAL_VOICES[v].prosody == "diphone")
    low, sr = S.festival_synth("no", voice, 1.0, 0.9, 1.0, seed=0)
    high, _ = S.festival_synth("no", voice, 1.0, 1.3, 1.0, seed=0)
    slow, _ = S.festival_synth("no", voice, 0.6, 1.0, 1.0, seed=0)
    fast, _ = S.festival_synth("no", voice, 1.5, 1.0, 1.0, seed=0)
    assert _f0(high, sr) > 1.3 * _f0(low, sr)
    assert len(S.trim_silence(slow, sr)) > 1.6 * len(S.trim_silence(fast, sr))


@needs_festival
def test_festival_scheme_errors_are_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    """festival --pipe reports a Scheme error and carries on: it must not pass as a clip."""
    voice = next(v for v in S.festival_voices() if S.FESTIVAL_VOICES[v].prosody == "diphone")
    monkeypatch.setattr(festival, "FESTIVAL_F0_FLOOR", "kws-unbound-variable")
    with pytest.raises(S.SynthError, match="SIOD ERROR"):
        S.festival_synth("no", voice, 1.0, 1.0, 1.0, seed=0)


@needs_festival
def test_festival_is_run_again_after_a_random_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    voice = S.festival_voices()[0]
    clean, _ = S.festival_synth("yes", voice, 1.0, 1.0, 1.0, seed=1)
    real, runs = festival._festival_run, []

    def dies_once(script: str, *args: object) -> subprocess.CompletedProcess:
        runs.append(script)
        if len(runs) == 1:
            return subprocess.CompletedProcess(["festival"], -11, b"", b"")
        return real(script, *args)

    monkeypatch.setattr(festival, "_festival_run", dies_once)
    again, _ = S.festival_synth("yes", voice, 1.0, 1.0, 1.0, seed=1)
    assert len(runs) == 2 and np.array_equal(again, clean)
    monkeypatch.setattr(festival, "_festival_run", lambda *a: subprocess.CompletedProcess(["festival"], -6, b"", b""))
    with pytest.raises(S.EngineCrash, match="signal 6"):
        S.festival_synth("yes", voice, 1.0, 1.0, 1.0, seed=1)


@needs_festival
def test_a_festival_crash_falls_back_to_the_plain_word(monkeypatch: pytest.MonkeyPatch) -> None:
    """festival 2.5 dies of heap corruption on rare inputs; one clip must not end a build."""
    real = S.festival_synth
    calls = []

    def crashes_on_marks(text: str, *args: object) -> tuple[np.ndarray, int]:
        calls.append(text)
        if text.endswith("?"):
            raise S.EngineCrash("signal 6")
        return real(text, *args)

    monkeypatch.setattr(render, "festival_synth", crashes_on_marks)
    voice = S.festival_voices()[0]
    sp = S.Speaker("0000fe57", "festival", voice, "", 1.0, 1.0, 0.8, 0.5, 0.5)
    spec = plan._draw_clip(np.random.default_rng(0), 0, "seven", sp, 0)
    renderer = S.Renderer({}, S.espeak_paths()[1])
    _, info = renderer.render(dataclasses.replace(spec, mark="?", noise=None), sp)
    assert calls == ["seven?", "seven"] and "engine_fallback" in info
    _, info = renderer.render(dataclasses.replace(spec, mark=".", noise=None), sp)
    assert "engine_fallback" not in info

    def crashes_unless_seed_0(text: str, voice: str, rate: float, f0: float, f0_range: float,
                              seed: int) -> tuple[np.ndarray, int]:
        calls.append((text, rate, seed))
        if seed != 0:
            raise S.EngineCrash("signal 11")
        return real(text, voice, rate, f0, f0_range, seed)

    monkeypatch.setattr(render, "festival_synth", crashes_unless_seed_0)
    calls.clear()
    spec = dataclasses.replace(spec, mark="?", noise=None, seed=7)
    _, info = renderer.render(spec, sp)
    assert calls == [("seven?", spec.rate, 7), ("seven", spec.rate, 7), ("seven", 1.0, 0)]
    assert "engine_fallback" in info


@needs_festival
def test_festival_build_records_voices_and_respellings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "ENGINE_SHARES", {"flite": 0.0, "festival": 1.0, "piper": 0.0})  # every speaker
    out = S.build_synth(tmp_path / "f", words=("yes", "no", "seven"), size="tiny", workers=1,
                        engines=("espeak", "festival"), progress=False)
    m = json.loads((out / S.MANIFEST).read_text())
    assert all(v in m["engines"]["festival"] for v in S.festival_voices())
    assert set(m["voices"]["engines"]) == {"festival"}
    langs = {S.FESTIVAL_VOICES[v].lang for v in S.festival_voices()} - {"en"}
    assert set(m["festival_respellings"]) == langs
    for rel, c in m["clips"].items():
        sp = m["speakers"][_speaker(rel)]
        lang = S.FESTIVAL_VOICES[sp["accent"]].lang
        assert c["text"] == (rel.split("/")[0] if lang == "en" else m["festival_respellings"][lang][rel.split("/")[0]])


@needs_piper
def test_piper_voice_is_a_pure_function_of_its_seed() -> None:
    voice = S.PiperVoice(S.piper_voices()[0])
    a = voice.synth("sˈɛvən", 1.0, 0.667, 0.8, seed=5)
    again = S.PiperVoice(S.piper_voices()[0]).synth("sˈɛvən", 1.0, 0.667, 0.8, seed=5)  # a fresh session
    other = voice.synth("sˈɛvən", 1.0, 0.667, 0.8, seed=6)
    slow = voice.synth("sˈɛvən", 1.6, 0.667, 0.8, seed=5)
    assert np.array_equal(a, again) and not np.array_equal(a, other)
    assert 0.2 < len(a) / voice.sample_rate < 1.5 and len(slow) > 1.3 * len(a)
    assert voice.ids("ab")[:2] == [voice.id_map["^"], voice.id_map["_"]] and voice.ids("ab")[-1] == voice.id_map["$"]
